"""Live frames: the DAQ publishes a proposal's detector frames over ZeroMQ, its members' sessions watch them."""
