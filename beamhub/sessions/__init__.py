"""What users run: sessions, their lifecycle, the reconciler and the proxy."""
