// Package deploy holds no code: its tests check the deployment files beside
// it (the Dockerfile at the repository's root, systemd/slsrelay.service,
// kubernetes/*.yaml) against the relay's code — ports, paths, probe
// endpoints, grace periods and defaults — and keep docs/THIRD_PARTY.md in
// step with the module graph (make third-party regenerates it).
package deploy
