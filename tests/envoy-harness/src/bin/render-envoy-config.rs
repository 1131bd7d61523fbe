//! Prints the deployment Envoy configuration (committed as `envoy/envoy.yaml`).

fn main() {
    print!("{}", envoy_harness::EnvoyConfig::deployment().render());
}
