//! The GitHub plugin as a real child process against the test kit's GitHub stand-in.

mod flow;
