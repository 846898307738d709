// being written (helper-6)
