//! netdiag-lab: a Kubernetes-shaped network on one machine, built from real Linux network
//! namespaces, veths, routes, iptables rules and dnsmasq, with a stand-in for the API server.
//! See the crate's README for the scenario format.

pub mod apiserver;
pub mod cli;
pub mod cluster;
pub mod dns;
pub mod endpoint_lab;
pub mod kubeproxy;
pub mod lab;
pub mod netns;
pub mod objects;
pub mod outside;
pub mod plan;
pub mod podapp;
pub mod rbac;
pub mod reviews;
pub mod runner;
pub mod scenario;
pub mod signals;
pub mod state;
