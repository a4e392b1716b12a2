"""The ``calyx`` command line: a thin layer over the library."""
