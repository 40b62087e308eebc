print("imgfs: not yet")
