"""What a valid export archive is: the .tgz walkers shared by the copy and the scrub, and their proofs."""
