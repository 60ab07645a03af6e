"""Realistic demo data for trying Aftercare out."""
