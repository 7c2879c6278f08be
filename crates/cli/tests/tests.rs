//! End-to-end tests of the real `creddy` binary against real servers.

mod kit;

mod attacks;
mod audit;
mod daytona;
mod enroll;
mod faults;
mod flow;
mod github;
mod plugins;
mod release;
mod secrets;
mod server_cmd;
mod tls;
mod vend;
mod workload;
