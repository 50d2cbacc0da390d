# DebVisor Datacenter Manager. Build from the repository root:
#   docker build -f docker/manager.Dockerfile -t debvisor/manager .
FROM node:20-bookworm-slim AS build
WORKDIR /src
COPY package.json package-lock.json ./
COPY apps/agent/package.json apps/agent/
COPY apps/manager/package.json apps/manager/
COPY apps/web/package.json apps/web/
COPY libs/proto/package.json libs/proto/
COPY libs/pki/package.json libs/pki/
COPY libs/common/package.json libs/common/
COPY libs/permissions/package.json libs/permissions/
COPY libs/testing/package.json libs/testing/
RUN npm ci --no-audit --no-fund
COPY . .
RUN npm run build && npm prune --omit=dev

FROM node:20-bookworm-slim
# nsupdate: ACME DNS-01 through RFC 2136 updates signed with TSIG (docs/certificates.md).
RUN apt-get update && apt-get install -y --no-install-recommends bind9-dnsutils \
 && rm -rf /var/lib/apt/lists/*
RUN useradd --system --home /var/lib/debvisor-manager debvisor \
 && mkdir -p /var/lib/debvisor-manager && chown debvisor /var/lib/debvisor-manager
WORKDIR /opt/debvisor
COPY --from=build /src /opt/debvisor
USER debvisor
ENV DEBVISOR_STATE_DIR=/var/lib/debvisor-manager \
    DEBVISOR_LISTEN=0.0.0.0:8443 \
    DEBVISOR_HTTP_LISTEN=0.0.0.0:8080
VOLUME /var/lib/debvisor-manager
# 8080: ACME HTTP-01 answers and redirects to HTTPS; publish it as port 80.
EXPOSE 8443 8080
HEALTHCHECK --interval=30s --timeout=5s CMD node -e "require('https').get({host:'127.0.0.1',port:8443,path:'/healthz',rejectUnauthorized:false},r=>process.exit(r.statusCode===200?0:1)).on('error',()=>process.exit(1))"
CMD ["node", "apps/manager/dist/main.js"]
