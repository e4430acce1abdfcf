package filenames
