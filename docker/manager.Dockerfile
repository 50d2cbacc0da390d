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
RUN useradd --system --home /var/lib/debvisor-manager debvisor \
 && mkdir -p /var/lib/debvisor-manager && chown debvisor /var/lib/debvisor-manager
WORKDIR /opt/debvisor
COPY --from=build /src /opt/debvisor
USER debvisor
ENV DEBVISOR_STATE_DIR=/var/lib/debvisor-manager \
    DEBVISOR_LISTEN=0.0.0.0:8443
VOLUME /var/lib/debvisor-manager
EXPOSE 8443
HEALTHCHECK --interval=30s --timeout=5s CMD node -e "require('https').get({host:'127.0.0.1',port:8443,path:'/healthz',rejectUnauthorized:false},r=>process.exit(r.statusCode===200?0:1)).on('error',()=>process.exit(1))"
CMD ["node", "apps/manager/dist/main.js"]
