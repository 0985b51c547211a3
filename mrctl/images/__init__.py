"""The images a cluster runs and the Debian packages they are built from."""
