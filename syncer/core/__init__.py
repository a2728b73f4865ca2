"""Pure decisions: data in, decisions out. No I/O and no clock reads in this package."""
