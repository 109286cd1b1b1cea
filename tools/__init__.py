"""Commands the CoE runs on this repository (release notes, the fleet report)."""
