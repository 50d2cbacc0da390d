# DebVisor agent (debvisor-rpcd). Build from the repository root:
#   docker build -f docker/agent.Dockerfile -t debvisor/agent .
FROM node:20-bookworm-slim AS build
WORKDIR /src
COPY . .
RUN npm ci --no-audit --no-fund && npm run build && npm prune --omit=dev

FROM node:20-bookworm-slim
WORKDIR /opt/debvisor
COPY --from=build /src /opt/debvisor
VOLUME /var/lib/debvisor-agent
EXPOSE 9443 9444
ENTRYPOINT ["node", "apps/agent/dist/main.js"]
CMD ["--config", "/etc/debvisor/agent.json"]
