"""Object storage from the environment: `STORAGE_URL` (or the usual `AWS_*` names).

    STORAGE_URL=s3://BUCKET[/PREFIX]?endpoint_url=http://minio:9000&region=us-east-1&addressing_style=path

Credentials come from boto3's own environment (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
optionally `AWS_SESSION_TOKEN`), never from the URL. Without `STORAGE_URL`, the
`AWS_STORAGE_BUCKET_NAME` (+ `AWS_S3_ENDPOINT_URL`, `AWS_S3_REGION_NAME`, `AWS_S3_PREFIX`,
`AWS_S3_ADDRESSING_STYLE`) names work too. Neither set: the local file system (the default).
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import parse_qs, urlsplit

QUERY_KEYS = {"endpoint_url", "region", "addressing_style"}


def parse_storage(environ: Mapping[str, str]) -> dict | None:
    """{"bucket", "prefix", "endpoint_url", "region", "addressing_style"} or None (local files).
    Raises ValueError naming what is wrong."""
    url = environ.get("STORAGE_URL", "").strip()
    if url:
        parts = urlsplit(url)
        if parts.scheme != "s3" or not parts.netloc:
            raise ValueError(f"STORAGE_URL must look like s3://BUCKET[/PREFIX]?..., got {url!r}")
        if parts.username or parts.password:
            raise ValueError(
                "STORAGE_URL must not carry credentials: set AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY in the environment"
            )
        query = parse_qs(parts.query, keep_blank_values=True)
        unknown = sorted(set(query) - QUERY_KEYS)
        if unknown:
            raise ValueError(
                f"STORAGE_URL: unknown parameter {', '.join(unknown)}; "
                f"expected {', '.join(sorted(QUERY_KEYS))}"
            )
        values = {k: v[-1] for k, v in query.items()}
        bucket, prefix = parts.netloc, parts.path.strip("/")
    elif environ.get("AWS_STORAGE_BUCKET_NAME", "").strip():
        values = {
            "endpoint_url": environ.get("AWS_S3_ENDPOINT_URL", ""),
            "region": environ.get("AWS_S3_REGION_NAME", ""),
            "addressing_style": environ.get("AWS_S3_ADDRESSING_STYLE", ""),
        }
        bucket = environ["AWS_STORAGE_BUCKET_NAME"].strip()
        prefix = environ.get("AWS_S3_PREFIX", "").strip("/")
    else:
        return None
    style = values.get("addressing_style") or "path"
    if style not in ("path", "virtual", "auto"):
        raise ValueError(f"addressing_style must be path, virtual or auto, got {style!r}")
    endpoint = values.get("endpoint_url") or None
    if endpoint and not endpoint.startswith(("http://", "https://")):
        raise ValueError(f"endpoint_url must start with http:// or https://, got {endpoint!r}")
    return {
        "bucket": bucket,
        "prefix": prefix,
        "endpoint_url": endpoint,
        "region": values.get("region") or "us-east-1",
        "addressing_style": style,
    }


def s3_storage_options(storage: dict, area: str) -> dict:
    """django-storages S3Storage OPTIONS for one area of the bucket ("media", "embeddings")."""
    from boto3.s3.transfer import TransferConfig

    location = "/".join(p for p in (storage["prefix"], area) if p)
    return {
        "bucket_name": storage["bucket"],
        "location": location,
        "endpoint_url": storage["endpoint_url"],
        "region_name": storage["region"],
        "addressing_style": storage["addressing_style"],
        "signature_version": "s3v4",
        "file_overwrite": True,  # names are ours (content or job ids): same name, same object
        "default_acl": None,
        "querystring_auth": True,
        "querystring_expire": 300,  # presigned download links live five minutes
        # multipart in 8 MiB parts, two at a time: an upload's memory stays flat at any size
        "transfer_config": TransferConfig(
            multipart_threshold=8 * 1024 * 1024,
            multipart_chunksize=8 * 1024 * 1024,
            max_concurrency=2,
        ),
    }


def s3_storages(storage: dict) -> dict:
    """The `STORAGES` entries of both areas in the bucket (`default`: media, `embeddings`)."""
    return {
        alias: {
            "BACKEND": "storages.backends.s3.S3Storage",
            "OPTIONS": s3_storage_options(storage, area),
        }
        for alias, area in (("default", "media"), ("embeddings", "embeddings"))
    }
