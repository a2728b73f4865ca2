FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY syncer ./syncer
RUN pip install --no-cache-dir . && useradd --system --uid 10001 syncer
USER syncer
EXPOSE 8000
CMD ["syncer", "web"]
