# One image for the three programs: karl (media node), karl-router, karl-operator.
# Media nodes run with hostNetwork (RTP port ranges cannot go through a Service); nothing else needs
# a privilege: no capability, no root, no kernel module.
FROM python:3.11-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY core ./core
COPY medianode ./medianode
COPY ngrouter ./ngrouter
COPY operator ./operator
RUN python -m venv /opt/karl \
    && /opt/karl/bin/pip install --no-cache-dir .

FROM python:3.11-slim-bookworm
COPY --from=build /opt/karl /opt/karl
RUN groupadd --system --gid 10001 karl \
    && useradd --system --uid 10001 --gid karl --no-create-home --shell /usr/sbin/nologin karl \
    && mkdir -p /var/lib/karl \
    && chown 10001:10001 /var/lib/karl  # CDR file and spool (a volume on Kubernetes)
ENV PATH="/opt/karl/bin:${PATH}" \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    KARL_LOG_FORMAT=json
USER 10001:10001
EXPOSE 22222/udp
CMD ["karl"]
