# etcd from Debian's etcd-server package, as the DebVisor hosts run it.
FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends etcd-server && rm -rf /var/lib/apt/lists/*
EXPOSE 2379 2380
ENTRYPOINT ["etcd"]
