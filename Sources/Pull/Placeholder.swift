enum PullPlaceholder {}
