"""Lake maintenance (DuckLake warehouse only): small files merged, retired files deleted.

Every hourly run rewrites the open day, which writes one new small Parquet file per table and day
and retires the previous one; the retired files stay on disk while snapshots still refer to them.
Once a day this asset merges adjacent small files, expires snapshots older than a day and deletes
the files no snapshot needs. It writes no partition of its own, so it needs no pool.
"""

import dagster as dg

from crypto_assets.lake import LakeWarehouse, file_counts, maintain

LAKE_MAINTENANCE_KEY = dg.AssetKey("lake_maintenance")


class LakeMaintenanceConfig(dg.Config):
    keep_snapshots_hours: float = 24.0  # time travel kept; older snapshots and their retired files go


@dg.asset(key=LAKE_MAINTENANCE_KEY, group_name="maintenance", kinds={"ducklake"}, owners=["team:ml-platform"])
def lake_maintenance(
    context: dg.AssetExecutionContext, config: LakeMaintenanceConfig, warehouse: LakeWarehouse
) -> dg.MaterializeResult:
    """Merge the lake's small files, expire old snapshots and delete the files no snapshot needs."""
    with warehouse.connect() as conn:
        before = sum(file_counts(conn).values())
        after = maintain(conn, keep_snapshots_hours=config.keep_snapshots_hours)
    context.log.info(f"lake maintenance: {before} live files before, {after['live_files']} after")
    return dg.MaterializeResult(metadata={"live_files_before": before, "live_files_after": after["live_files"]})


lake_maintenance_job = dg.define_asset_job("lake_maintenance_job", selection=[LAKE_MAINTENANCE_KEY])
schedules = [dg.ScheduleDefinition(job=lake_maintenance_job, cron_schedule="30 3 * * *", execution_timezone="UTC")]
