//! The Daytona plugin as a real child process against the Daytona stand-in.

mod flow;
