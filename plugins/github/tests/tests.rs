//! The GitHub plugin against the test kit's GitHub stand-in.
