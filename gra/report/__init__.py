"""Reports over run outputs: how far reviewers agree, and how well they judge labelled pairs."""
