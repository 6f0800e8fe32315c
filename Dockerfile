# iot-batch-watcher container image (DESIGN.md §8, contract).
#
# - Multi-stage: the build stage compiles TypeScript with every dependency; the final stage holds only the
#   production dependencies, dist/ and config/.
# - Builds with the legacy builder and offline from Docker Hub (../shared/tools/docker-base.sh provides a
#   local node:24-bookworm-slim), so: no `# syntax=` line, no digest pins, no BuildKit-only instructions.
# - Runs as `node` (uid 1000). CMD is exec-form: the base image's docker-entrypoint.sh `exec`s it, so node is
#   PID 1 and receives SIGTERM directly (graceful shutdown, exit 0).
# - Config: /etc/iot-batch-watcher/watcher.yaml (mount your own over it). State and results live under the
#   /var/lib/iot-batch-watcher volume, so the container can run with --read-only.
#
#   docker build -t iot-batch-watcher .
#   docker run --read-only -v ibw-data:/var/lib/iot-batch-watcher \
#     -v "$PWD/watcher.yaml:/etc/iot-batch-watcher/watcher.yaml:ro" \
#     -e ALIBABA_CLOUD_ACCESS_KEY_ID -e ALIBABA_CLOUD_ACCESS_KEY_SECRET -p 9464:9464 iot-batch-watcher

FROM node:24-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json .npmrc ./
# NOTE: --ignore-scripts because `prepare` would run the build before the sources are copied; tsc needs no
# install scripts. Keeping the dependency layer separate lets source-only changes reuse it.
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm run build

FROM node:24-bookworm-slim
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG SOURCE_URL=https://github.com/iot-batch-watcher/iot-batch-watcher
LABEL org.opencontainers.image.title="iot-batch-watcher" \
      org.opencontainers.image.description="Watches Alibaba Cloud IoT Platform batch device registrations (ApplyIds) until they settle." \
      org.opencontainers.image.source="${SOURCE_URL}" \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"

# NODE_OPTIONS: V8's young generation stops growing at 4 MB semi-spaces instead of 16 (it cannot be changed once
# node runs, so src/heap-tuning.ts cannot set it): about 20 MB less RSS at 100,000 batches for no measurable CPU on
# the poll path (docs/benchmarks.md §6). The benchmarks run the daemon with these same options.
ENV NODE_ENV=production \
    NODE_OPTIONS=--max-semi-space-size=4 \
    IBW_CONFIG=/etc/iot-batch-watcher/watcher.yaml \
    IBW_HTTP_LISTEN=0.0.0.0:9464

WORKDIR /app
COPY package.json package-lock.json .npmrc ./
# NOTE: --ignore-scripts: `prepare` runs the TypeScript build, which needs dev dependencies; dist/ comes from
# the build stage instead.
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund \
 && npm cache clean --force
COPY --from=build /app/dist ./dist
COPY config ./config
COPY config/container.yaml /etc/iot-batch-watcher/watcher.yaml
RUN mkdir -p /var/lib/iot-batch-watcher/state /var/lib/iot-batch-watcher/results \
 && chown -R node:node /var/lib/iot-batch-watcher \
 && chmod 0700 /var/lib/iot-batch-watcher/state /var/lib/iot-batch-watcher/results

USER node
VOLUME ["/var/lib/iot-batch-watcher"]
EXPOSE 9464

# Probes /healthz on the port of IBW_HTTP_LISTEN (default 9464); a listen of "off" makes the container unhealthy.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["node", "-e", "const p=(process.env.IBW_HTTP_LISTEN||'9464').split(':').pop();fetch('http://127.0.0.1:'+p+'/healthz',{signal:AbortSignal.timeout(4000)}).then(r=>process.exit(r.status===200?0:1),()=>process.exit(1))"]

CMD ["node", "dist/cli.js", "run", "--config", "/etc/iot-batch-watcher/watcher.yaml"]
