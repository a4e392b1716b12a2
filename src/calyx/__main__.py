from calyx.cli.main import entry

entry()
