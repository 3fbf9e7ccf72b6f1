# One image for the API, the worker and the migration job (the command picks which).
FROM node:20-bookworm-slim
WORKDIR /app
RUN apt-get update && apt-get install -y --no-install-recommends python3 make g++ && rm -rf /var/lib/apt/lists/*
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY . .
ENV NODE_ENV=production DEVELOPMENT_MODE=false
USER node
EXPOSE 3000
CMD ["npm", "run", "api"]
