# syntax=docker/dockerfile:1
# slsrelay container image:  make image  (or docker build with the build
# args below). The relay runs as a non-root user on a distroless base (CA
# certificates, tzdata, /etc/passwd, nothing else), reads its config from
# /etc/slsrelay/relay.yaml and keeps its spool and checkpoints in the
# /var/lib/slsrelay volume. docs/DEPLOY.md has the recipes.

ARG GO_VERSION=1.26.8

FROM --platform=$BUILDPLATFORM golang:${GO_VERSION}-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG TARGETOS=linux
ARG TARGETARCH=amd64
ARG VERSION=dev
ARG COMMIT=unknown
ARG DATE=unknown
RUN CGO_ENABLED=0 GOOS=${TARGETOS} GOARCH=${TARGETARCH} \
    go build -trimpath \
      -ldflags "-s -w -X main.version=${VERSION} -X main.commit=${COMMIT} -X main.date=${DATE}" \
      -o /out/usr/local/bin/slsrelay ./cmd/slsrelay \
 && mkdir -p /out/var/lib/slsrelay /out/etc/slsrelay

# static-debian12: CA certificates and tzdata included; :nonroot runs as
# uid/gid 65532.
FROM gcr.io/distroless/static-debian12:nonroot
ARG VERSION=dev
ARG COMMIT=unknown
ARG DATE=unknown
LABEL org.opencontainers.image.title="slsrelay" \
      org.opencontainers.image.description="Ships security and audit logs from Alibaba Cloud Log Service (SLS) to a SIEM without losing an event" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${COMMIT}" \
      org.opencontainers.image.created="${DATE}"
COPY --from=build /out/usr/local/bin/slsrelay /usr/local/bin/slsrelay
COPY --from=build --chown=65532:65532 /out/var/lib/slsrelay /var/lib/slsrelay
COPY --from=build /out/etc/slsrelay /etc/slsrelay
COPY LICENSE docs/THIRD_PARTY.md /usr/share/doc/slsrelay/
USER 65532:65532
VOLUME ["/var/lib/slsrelay"]
# metrics.listen in relay.yaml (/metrics, /healthz, /readyz); set it to
# 0.0.0.0:9108 inside a container.
EXPOSE 9108
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/slsrelay"]
CMD ["run", "--config", "/etc/slsrelay/relay.yaml"]
