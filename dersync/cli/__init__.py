"""The `dersync` command line: thin wrappers that build settings and call the packages."""
