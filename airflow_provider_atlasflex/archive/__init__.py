"""The archive: what a valid export is (the .tgz walkers shared by copy and scrub), what proves it ours, what it covers."""
