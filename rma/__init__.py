"""Return authorisations: RMA numbers with a check character and printable return labels."""
