/// imgfs's version, shown by `imgfs --version` and in `imgfs status` for the serving process.
let imgfsVersion = "0.10.0"
