"""Service visits (repair orders) recorded at reception or imported from a DMS."""
