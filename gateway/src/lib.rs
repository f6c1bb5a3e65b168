//! The provider's gateway: HTTPS by hostname in front of every lease's web services. The
//! keeper pushes the route table ([`routes`]) over a local admin socket ([`admin`]); clients
//! connect over TLS ([`tls`]) with HTTP/1.1 or HTTP/2 and are proxied ([`proxy`]) to the
//! workload; [`server`] bounds what any client can hold; [`wake`] counts each app's open
//! work and wakes an app scaled to zero; [`signin`] admits signed-in wallets to private apps;
//! [`acme`] obtains certificates for tenants' custom domains.

pub mod acme;
pub mod admin;
mod body;
pub mod config;
pub mod metrics;
pub mod proxy;
pub mod routes;
pub mod server;
pub mod signin;
pub mod tls;
pub mod upstream;
pub mod wake;
