"""HDF5 files read for a caller as h5grove answers them, for the h5web viewer."""
