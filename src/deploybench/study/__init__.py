"""Study: every candidate deployment on this machine built, verified, served, load-tested and recorded."""
