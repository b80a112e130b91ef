"""The deployment artifacts: deploy/nginx.conf, Dockerfile, docker-compose.yml."""
