"""Every Docker call mrctl makes, through docker-py: no other package imports `docker`."""
