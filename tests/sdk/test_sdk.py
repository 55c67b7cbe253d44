"""Drives the tcbackup emulator with Tencent's own Python SDKs.

tencentcloud-sdk-python-redis and -postgres sign, send and parse exactly as
they do against the real service; if the emulator's wire behaviour (TC3
check, envelope, Content-Type, field names, error codes, URL shapes) drifts
from the real one, these calls fail. Run through tests/sdk/run.sh, which
starts a standalone emulator and sets:

  TCB_EMU_ENDPOINT         host:port of the emulator
  TENCENTCLOUD_SECRET_ID   the key pair it accepts
  TENCENTCLOUD_SECRET_KEY
"""

import gzip
import io
import os
import re
import tarfile
import unittest
import urllib.error
import urllib.request

from tencentcloud.common import credential
from tencentcloud.common.exception.tencent_cloud_sdk_exception import (
    TencentCloudSDKException,
)
from tencentcloud.common.profile.client_profile import ClientProfile
from tencentcloud.common.profile.http_profile import HttpProfile
from tencentcloud.postgres.v20170312 import models as pg_models
from tencentcloud.postgres.v20170312 import postgres_client
from tencentcloud.redis.v20180412 import models as redis_models
from tencentcloud.redis.v20180412 import redis_client

ENDPOINT = os.environ["TCB_EMU_ENDPOINT"]
SECRET_ID = os.environ["TENCENTCLOUD_SECRET_ID"]
SECRET_KEY = os.environ["TENCENTCLOUD_SECRET_KEY"]
REGION = "ap-guangzhou"
REDIS_INSTANCE = "crs-4y9t57vt"
# The sample instance whose backups are encrypted: the newest with its
# DecryptKey, the older one with a KMS key id and no key.
ENCRYPTED_INSTANCE = "crs-enc8q2vd"
KMS_KEY_ID = "kms-3f7c1a9e-emulated"
PG_INSTANCE = "postgres-oamgybor"
# The sample PostgreSQL instance whose one base backup is a `snapshot`.
PG_SNAPSHOT_INSTANCE = "postgres-snap9x2q"
# The remark of the one manual sample Redis backup (the second newest).
MANUAL_REMARK = "before the 6.2 to 7.0 upgrade"
TIME = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$")


def profile(method="POST"):
    # `protocol` is the constructor's name for what the SDK stores as `scheme`.
    http = HttpProfile(endpoint=ENDPOINT, protocol="http", reqMethod=method)
    return ClientProfile(httpProfile=http)


def site_profile(root_domain=None, endpoint=None):
    # The SDK names (and signs) the real API host, from the site's root
    # domain or an explicit endpoint, and reaches the emulator as its plain
    # http proxy: the request still carries `Host: <that host>`.
    http = HttpProfile(
        endpoint=endpoint,
        protocol="http",
        rootDomain=root_domain,
        proxy="http://" + ENDPOINT,
    )
    return ClientProfile(httpProfile=http)


def redis(key=SECRET_KEY, method="POST"):
    cred = credential.Credential(SECRET_ID, key)
    return redis_client.RedisClient(cred, REGION, profile(method))


def postgres():
    cred = credential.Credential(SECRET_ID, SECRET_KEY)
    return postgres_client.PostgresClient(cred, REGION, profile())


def fetch(url):
    with urllib.request.urlopen(url, timeout=30) as resp:
        return resp.status, resp.read()


def fetch_status(url):
    try:
        status, _ = fetch(url)
        return status
    except urllib.error.HTTPError as err:
        return err.code


def pg_filter(name, *values):
    f = pg_models.Filter()
    f.Name = name
    f.Values = list(values)
    return f


class RedisSdk(unittest.TestCase):
    def backups(self, **fields):
        req = redis_models.DescribeInstanceBackupsRequest()
        req.InstanceId = REDIS_INSTANCE
        for k, v in fields.items():
            setattr(req, k, v)
        return redis().DescribeInstanceBackups(req)

    def test_describe_instances_over_get(self):
        req = redis_models.DescribeInstancesRequest()
        req.InstanceIds = [REDIS_INSTANCE, "crs-00000000"]
        req.Limit = 20
        resp = redis(method="GET").DescribeInstances(req)
        self.assertEqual(resp.TotalCount, 1)
        inst = resp.InstanceSet[0]
        self.assertEqual(inst.InstanceId, REDIS_INSTANCE)
        self.assertEqual(inst.RedisShardNum, 3)
        self.assertEqual(inst.ProductType, "cluster")

    def test_instance_backups_exclude_the_one_in_progress(self):
        resp = self.backups()
        self.assertEqual(resp.TotalCount, 4)
        self.assertEqual(len(resp.BackupSet), 4)
        starts = [b.StartTime for b in resp.BackupSet]
        self.assertEqual(starts, sorted(starts, reverse=True))
        for b in resp.BackupSet:
            self.assertEqual(b.Status, 2)
            self.assertEqual(b.Locked, 0)
            self.assertEqual(b.InstanceId, REDIS_INSTANCE)
            self.assertRegex(b.StartTime, TIME)
            self.assertRegex(b.EndTime, TIME)
            self.assertRegex(b.ExpireTime, TIME)
        with_running = self.backups(Status=[1, 2])
        self.assertEqual(with_running.TotalCount, 5)
        self.assertEqual(with_running.BackupSet[0].Status, 1)

    def test_listing_says_manual_or_automatic_with_the_remark_and_file_type(self):
        resp = self.backups()
        types = [b.BackupType for b in resp.BackupSet]
        # "0" manual, "1" automatic (RedisBackupSet, not DescribeBackupDetail).
        self.assertEqual(types, ["1", "0", "1", "1"])
        manual = resp.BackupSet[1]
        self.assertEqual(manual.Remark, MANUAL_REMARK)
        for b in resp.BackupSet:
            self.assertEqual(b.FileType, "RDB-Redis 6.2")
            self.assertEqual(b.InstanceName, REDIS_INSTANCE + "-name")
            # BackupSize is internal: a number, but not the files' sum.
            self.assertIsInstance(b.BackupSize, int)
        self.assertEqual(resp.BackupSet[0].Remark, "")

    def test_backup_size_is_not_the_sum_of_the_files(self):
        backup = self.backups().BackupSet[0]
        req = redis_models.DescribeBackupUrlRequest()
        req.InstanceId = REDIS_INSTANCE
        req.BackupId = backup.BackupId
        infos = redis().DescribeBackupUrl(req).BackupInfos
        self.assertNotEqual(backup.BackupSize, sum(i.FileSize for i in infos))

    def test_instance_name_and_version(self):
        req = redis_models.DescribeInstancesRequest()
        req.InstanceId = REDIS_INSTANCE
        inst = redis().DescribeInstances(req).InstanceSet[0]
        self.assertEqual(inst.InstanceName, REDIS_INSTANCE + "-name")
        self.assertEqual(inst.CurrentRedisVersion, "6.2")

    def test_paging_keeps_the_total(self):
        resp = self.backups(Limit=2, Offset=2)
        self.assertEqual(resp.TotalCount, 4)
        self.assertEqual(len(resp.BackupSet), 2)
        with self.assertRaises(TencentCloudSDKException) as ctx:
            self.backups(Limit=101)
        self.assertEqual(ctx.exception.get_code(), "InvalidParameterValue")

    def test_backup_url_gives_one_rdb_per_shard(self):
        backup = self.backups().BackupSet[0]
        req = redis_models.DescribeBackupUrlRequest()
        req.InstanceId = REDIS_INSTANCE
        req.BackupId = backup.BackupId
        resp = redis().DescribeBackupUrl(req)
        self.assertEqual(len(resp.BackupInfos), 3)
        self.assertEqual(len(resp.Filenames), 3)
        for info in resp.BackupInfos:
            self.assertTrue(info.FileName.endswith(".rdb"), info.FileName)
            self.assertTrue(info.DownloadUrl.startswith("http://" + ENDPOINT + "/"))
            self.assertIn("?sign=", info.DownloadUrl)
        first = resp.BackupInfos[0]
        status, body = fetch(first.DownloadUrl)
        self.assertEqual(status, 200)
        self.assertEqual(len(body), first.FileSize)
        self.assertTrue(body.startswith(b"REDIS0009"))

    def test_backup_detail_gives_an_encrypted_backups_key(self):
        listed = self.backups(InstanceId=ENCRYPTED_INSTANCE)
        self.assertEqual(listed.TotalCount, 2)
        self.assertTrue(all(b.Encrypted for b in listed.BackupSet))
        details = []
        for backup in listed.BackupSet:
            req = redis_models.DescribeBackupDetailRequest()
            req.InstanceId = ENCRYPTED_INSTANCE
            req.BackupId = backup.BackupId
            details.append(redis().DescribeBackupDetail(req))
        newest, older = details
        self.assertIs(newest.Encrypted, True)
        self.assertEqual(newest.KeyAlgorithm, "AES-256-CBC")
        self.assertRegex(newest.DecryptKey, r"^[0-9a-f]{64}$")
        self.assertIsNone(newest.KmsKeyId)
        self.assertIs(older.Encrypted, True)
        self.assertEqual(older.KeyAlgorithm, "AES-256-CBC")
        self.assertIsNone(older.DecryptKey)
        self.assertEqual(older.KmsKeyId, KMS_KEY_ID)
        # The files are ciphertext, not RDB.
        req = redis_models.DescribeBackupUrlRequest()
        req.InstanceId = ENCRYPTED_INSTANCE
        req.BackupId = listed.BackupSet[0].BackupId
        info = redis().DescribeBackupUrl(req).BackupInfos[0]
        status, body = fetch(info.DownloadUrl)
        self.assertEqual(status, 200)
        self.assertEqual(len(body), info.FileSize)
        self.assertFalse(body.startswith(b"REDIS"))
        # An unencrypted backup's detail says so.
        req = redis_models.DescribeBackupDetailRequest()
        req.InstanceId = REDIS_INSTANCE
        req.BackupId = self.backups().BackupSet[0].BackupId
        plain = redis().DescribeBackupDetail(req)
        self.assertIs(plain.Encrypted, False)
        self.assertIsNone(plain.DecryptKey)

    def test_download_restriction_through_the_sdk_model(self):
        req = redis_models.DescribeBackupDownloadRestrictionRequest()
        resp = redis().DescribeBackupDownloadRestriction(req)
        self.assertEqual(resp.LimitType, "NoLimit")
        self.assertEqual(resp.VpcComparisonSymbol, "In")
        self.assertIn(resp.IpComparisonSymbol, ("In", "NotIn"))
        self.assertEqual(resp.LimitVpc, [])
        self.assertEqual(resp.LimitIp, [])
        self.assertTrue(resp.RequestId)

    def test_limit_only_intranet_gives_links_the_public_host_refuses(self):
        backup = self.backups().BackupSet[0]
        req = redis_models.DescribeBackupUrlRequest()
        req.InstanceId = REDIS_INSTANCE
        req.BackupId = backup.BackupId
        req.LimitType = "LimitOnlyIntranet"
        resp = redis().DescribeBackupUrl(req)
        first = resp.BackupInfos[0]
        self.assertTrue(first.DownloadUrl.startswith("http://" + ENDPOINT + "/"))
        self.assertFalse(first.InnerDownloadUrl.startswith("http://" + ENDPOINT + "/"))
        self.assertIn("?sign=", first.InnerDownloadUrl)
        self.assertEqual(fetch_status(first.DownloadUrl), 403)
        status, body = fetch(first.InnerDownloadUrl)
        self.assertEqual(status, 200)
        self.assertEqual(len(body), first.FileSize)
        req.LimitType = "OnlyIntranet"
        with self.assertRaises(TencentCloudSDKException) as ctx:
            redis().DescribeBackupUrl(req)
        self.assertEqual(ctx.exception.get_code(), "InvalidParameterValue")

    def test_unknown_backup_has_the_documented_code(self):
        req = redis_models.DescribeBackupUrlRequest()
        req.InstanceId = REDIS_INSTANCE
        req.BackupId = "no-such-backup"
        with self.assertRaises(TencentCloudSDKException) as ctx:
            redis().DescribeBackupUrl(req)
        self.assertEqual(ctx.exception.get_code(), "InvalidParameterValue.BackupNotExists")
        self.assertTrue(ctx.exception.get_request_id())

    def test_wrong_key_is_a_signature_failure(self):
        req = redis_models.DescribeInstanceBackupsRequest()
        req.InstanceId = REDIS_INSTANCE
        with self.assertRaises(TencentCloudSDKException) as ctx:
            redis(key=SECRET_KEY + "x").DescribeInstanceBackups(req)
        self.assertEqual(ctx.exception.get_code(), "AuthFailure.SignatureFailure")
        self.assertEqual(
            ctx.exception.get_message(),
            "The provided credentials could not be validated. "
            "Please check your signature is correct.",
        )


class SitesAndRegionalHosts(unittest.TestCase):
    """The hosts tcbackup picks with `[api] site` and for financial regions,
    as the SDK's own rootDomain and endpoint settings produce them."""

    def cred(self):
        return credential.Credential(SECRET_ID, SECRET_KEY)

    def test_the_intl_root_domain_is_served_for_both_services(self):
        profile = site_profile(root_domain="intl.tencentcloudapi.com")
        client = redis_client.RedisClient(self.cred(), REGION, profile)
        self.assertEqual(client._get_endpoint(), "redis.intl.tencentcloudapi.com")
        req = redis_models.DescribeInstancesRequest()
        req.InstanceIds = [REDIS_INSTANCE]
        resp = client.DescribeInstances(req)
        self.assertEqual(resp.TotalCount, 1)
        pg = postgres_client.PostgresClient(self.cred(), REGION, profile)
        req = pg_models.DescribeDBInstancesRequest()
        req.Filters = [pg_filter("db-instance-id", PG_INSTANCE)]
        self.assertEqual(pg.DescribeDBInstances(req).TotalCount, 1)

    def test_a_financial_region_needs_its_regional_host(self):
        fsi = "ap-shanghai-fsi"
        regional = site_profile(endpoint="redis.%s.tencentcloudapi.com" % fsi)
        client = redis_client.RedisClient(self.cred(), fsi, regional)
        resp = client.DescribeInstances(redis_models.DescribeInstancesRequest())
        self.assertEqual(resp.TotalCount, 0)
        for root in ("tencentcloudapi.com", "intl.tencentcloudapi.com"):
            nearest = redis_client.RedisClient(self.cred(), fsi, site_profile(root_domain=root))
            with self.assertRaises(TencentCloudSDKException) as ctx:
                nearest.DescribeInstances(redis_models.DescribeInstancesRequest())
            self.assertEqual(ctx.exception.get_code(), "UnsupportedRegion", root)
        # A regional host serves its own region only.
        other = redis_client.RedisClient(self.cred(), "ap-shenzhen-fsi", regional)
        with self.assertRaises(TencentCloudSDKException) as ctx:
            other.DescribeInstances(redis_models.DescribeInstancesRequest())
        self.assertEqual(ctx.exception.get_code(), "UnsupportedRegion")


class PostgresSdk(unittest.TestCase):
    def base_backups(self):
        req = pg_models.DescribeBaseBackupsRequest()
        req.Filters = [pg_filter("db-instance-id", PG_INSTANCE)]
        return postgres().DescribeBaseBackups(req)

    def test_base_backups_list_finished_and_running(self):
        resp = self.base_backups()
        self.assertEqual(resp.TotalCount, 5)
        states = [b.State for b in resp.BaseBackupSet]
        self.assertEqual(states.count("finished"), 4)
        self.assertEqual(states.count("running"), 1)
        for b in resp.BaseBackupSet:
            self.assertEqual(b.DBInstanceId, PG_INSTANCE)
            # One sample base backup is a .tar.zst, as newer instances write.
            self.assertTrue(b.Name.endswith((".tar.gz", ".tar.zst")), b.Name)
            self.assertGreater(b.Size, 0)
            self.assertRegex(b.StartTime, TIME)

    def test_base_backups_say_method_and_mode(self):
        resp = self.base_backups()
        for b in resp.BaseBackupSet:
            self.assertEqual(b.BackupMethod, "physical")
            if b.BackupMode == "manual":
                self.assertTrue(b.Name.startswith("manual-"), b.Name)
            else:
                self.assertEqual(b.BackupMode, "automatic")
        modes = [b.BackupMode for b in resp.BaseBackupSet]
        self.assertEqual(modes.count("manual"), 1)

    def test_a_snapshot_base_backup_is_listed(self):
        req = pg_models.DescribeBaseBackupsRequest()
        req.Filters = [pg_filter("db-instance-id", PG_SNAPSHOT_INSTANCE)]
        resp = postgres().DescribeBaseBackups(req)
        self.assertEqual(resp.TotalCount, 1)
        snap = resp.BaseBackupSet[0]
        self.assertEqual(snap.BackupMethod, "snapshot")
        self.assertEqual(snap.BackupMode, "automatic")
        self.assertEqual(snap.State, "finished")

    def test_instance_name_and_versions(self):
        req = pg_models.DescribeDBInstancesRequest()
        req.Filters = [pg_filter("db-instance-id", PG_INSTANCE)]
        inst = postgres().DescribeDBInstances(req).DBInstanceSet[0]
        self.assertEqual(inst.DBInstanceName, PG_INSTANCE + "-name")
        self.assertEqual(inst.DBVersion, "16.2")
        self.assertEqual(inst.DBMajorVersion, "16")
        self.assertEqual(inst.DBKernelVersion, "v16.2_r1.5")

    def test_log_backups_default_paging(self):
        req = pg_models.DescribeLogBackupsRequest()
        req.Filters = [pg_filter("db-instance-id", PG_INSTANCE)]
        resp = postgres().DescribeLogBackups(req)
        self.assertEqual(resp.TotalCount, 8)
        self.assertEqual(len(resp.LogBackupSet), 8)
        req.Limit = 3
        req.Offset = 6
        resp = postgres().DescribeLogBackups(req)
        self.assertEqual(resp.TotalCount, 8)
        self.assertEqual(len(resp.LogBackupSet), 2)

    def test_download_url_serves_the_archive(self):
        finished = [b for b in self.base_backups().BaseBackupSet if b.State == "finished"][0]
        req = pg_models.DescribeBackupDownloadURLRequest()
        req.DBInstanceId = PG_INSTANCE
        req.BackupType = "BaseBackup"
        req.BackupId = finished.Id
        req.URLExpireTime = 2
        resp = postgres().DescribeBackupDownloadURL(req)
        url = resp.BackupDownloadURL
        self.assertIn("q-sign-time=", url)
        status, body = fetch(url)
        self.assertEqual(status, 200)
        self.assertEqual(len(body), finished.Size)
        with tarfile.open(fileobj=io.BytesIO(gzip.decompress(body))) as tar:
            names = tar.getnames()
        self.assertIn("backup_label", names)
        self.assertIn("PG_VERSION", names)

    def test_download_restriction_through_the_sdk_model(self):
        req = pg_models.DescribeBackupDownloadRestrictionRequest()
        resp = postgres().DescribeBackupDownloadRestriction(req)
        self.assertEqual(resp.RestrictionType.upper(), "NONE")
        self.assertEqual(resp.VpcIdSet, [])
        self.assertEqual(resp.IpSet, [])
        self.assertTrue(resp.RequestId)

    def test_intranet_restriction_gives_the_intranet_url(self):
        finished = [b for b in self.base_backups().BaseBackupSet if b.State == "finished"][0]
        req = pg_models.DescribeBackupDownloadURLRequest()
        req.DBInstanceId = PG_INSTANCE
        req.BackupType = "BaseBackup"
        req.BackupId = finished.Id
        restriction = pg_models.BackupDownloadRestriction()
        restriction.RestrictionType = "INTRANET"
        req.BackupDownloadRestriction = restriction
        url = postgres().DescribeBackupDownloadURL(req).BackupDownloadURL
        self.assertFalse(url.startswith("http://" + ENDPOINT + "/"), url)
        self.assertIn("q-sign-time=", url)
        status, body = fetch(url)
        self.assertEqual(status, 200)
        self.assertEqual(len(body), finished.Size)
        restriction.RestrictionType = "INNER"
        with self.assertRaises(TencentCloudSDKException) as ctx:
            postgres().DescribeBackupDownloadURL(req)
        self.assertEqual(
            ctx.exception.get_code(), "InvalidParameterValue.InvalidParameterValueError"
        )

    def test_url_lifetime_over_36_hours_is_refused(self):
        req = pg_models.DescribeBackupDownloadURLRequest()
        req.DBInstanceId = PG_INSTANCE
        req.BackupType = "BaseBackup"
        req.BackupId = self.base_backups().BaseBackupSet[1].Id
        req.URLExpireTime = 37
        with self.assertRaises(TencentCloudSDKException) as ctx:
            postgres().DescribeBackupDownloadURL(req)
        self.assertEqual(
            ctx.exception.get_code(), "InvalidParameterValue.ParameterValueExceedError"
        )


if __name__ == "__main__":
    unittest.main()
