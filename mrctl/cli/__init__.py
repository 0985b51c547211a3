"""The `mrctl` command: each subcommand parses its flags, calls one library function and prints."""
