//! Path spellings: locations, static files and plugins see one normalised path.
