#!/bin/bash
# Start a throw-away single-node Slurm cluster (Debian 12 packages, run as root, no systemd).
#   slurm/local-cluster/up.sh              slurmctld + slurmd + munged + slurmdbd/MariaDB (sacct works)
#   ACCOUNTING=0 slurm/local-cluster/up.sh  no accounting (sacct fails; a killed job cannot be seen)
#   SLURM_CI_BASE=/tmp/x ...               runtime folder (state, spool, logs, pid files, database)
#   FRESH=1 ...                            wipe the runtime folder first (job ids restart at 1)
# Needs: apt-get install --no-install-recommends slurmctld slurmd slurm-client munge slurmdbd mariadb-server
# Stop with down.sh (by PID file only).
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ACCOUNTING=${ACCOUNTING:-1}
BASE=${SLURM_CI_BASE:-/tmp/slurmci}
CONF_DIR=${SLURM_CONF_DIR:-/etc/slurm}
CPUS=$(nproc)
MEM_MB=$(( $(awk '/MemTotal/ {print int($2/1024)}' /proc/meminfo) * 9 / 10 ))
t_start=$EPOCHREALTIME
elapsed() { awk "BEGIN{printf \"%.1f\", $EPOCHREALTIME - $t_start}"; }
die() { echo "up.sh: $*" >&2; tail -n 20 "$BASE"/log/*.log 2>/dev/null >&2 || true; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (the daemons run as root and write $CONF_DIR)"
for b in slurmctld slurmd munged sbatch; do
  command -v "$b" >/dev/null || [ -x "/usr/sbin/$b" ] || die "$b not found; apt-get install --no-install-recommends slurmctld slurmd slurm-client munge"
done
[ "${FRESH:-0}" = 1 ] && rm -rf "$BASE"
mkdir -p "$BASE"/{state,spool,log,run} "$CONF_DIR"

# ---- config from the templates ---------------------------------------------
if [ "$ACCOUNTING" = 1 ]; then
  [ -x /usr/sbin/slurmdbd ] && command -v mariadb-install-db >/dev/null \
    || die "accounting needs slurmdbd and mariadb-server (or run with ACCOUNTING=0)"
  ACCT='AccountingStorageType=accounting_storage/slurmdbd\nAccountingStorageHost=localhost\nAccountingStoragePort=6819\nJobAcctGatherType=jobacct_gather/linux'
else
  ACCT='AccountingStorageType=accounting_storage/none\nJobAcctGatherType=jobacct_gather/none'
fi
fill() { sed -e "s|@BASE@|$BASE|g" -e "s|@CPUS@|$CPUS|g" -e "s|@MEM_MB@|$MEM_MB|g" -e "s|@ACCOUNTING@|$ACCT|g" "$1"; }
fill "$HERE/slurm.conf.in" > "$CONF_DIR/slurm.conf.tmp" && mv "$CONF_DIR/slurm.conf.tmp" "$CONF_DIR/slurm.conf"

# ---- munge -----------------------------------------------------------------
if [ ! -s /etc/munge/munge.key ]; then
  mungekey --create --force; chown munge:munge /etc/munge/munge.key; chmod 400 /etc/munge/munge.key
fi
install -d -o munge -g munge -m 0755 /run/munge
if ! munge -n >/dev/null 2>&1; then
  runuser -u munge -- /usr/sbin/munged
  for _ in $(seq 100); do munge -n >/dev/null 2>&1 && break; sleep 0.1; done
fi
munge -n | unmunge >/dev/null || die "munged does not answer"
echo "munged ready after $(elapsed)s"

# ---- MariaDB + slurmdbd ----------------------------------------------------
if [ "$ACCOUNTING" = 1 ]; then
  install -d -o mysql -g mysql -m 0755 /run/mysqld
  if [ ! -d "$BASE/mysql/mysql" ]; then
    mariadb-install-db --user=mysql --datadir="$BASE/mysql" --auth-root-authentication-method=socket \
      --skip-test-db >"$BASE/log/mariadb-install.log" 2>&1 || die "mariadb-install-db failed"
  fi
  if ! mariadb-admin --socket=/run/mysqld/mysqld.sock ping >/dev/null 2>&1; then
    # pid and log must be where the mysql user can write
    setsid /usr/sbin/mariadbd --user=mysql --datadir="$BASE/mysql" --socket=/run/mysqld/mysqld.sock \
      --pid-file=/run/mysqld/mariadbd.pid --log-error=/run/mysqld/mariadbd.err --skip-networking \
      --innodb-buffer-pool-size=64M </dev/null >/dev/null 2>&1 &
    for _ in $(seq 300); do mariadb-admin --socket=/run/mysqld/mysqld.sock ping >/dev/null 2>&1 && break; sleep 0.1; done
  fi
  mariadb --socket=/run/mysqld/mysqld.sock -e "CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY 'slurmpw';
    GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';" || die "MariaDB did not start (see /run/mysqld/mariadbd.err)"
  echo "mariadb ready after $(elapsed)s"
  fill "$HERE/slurmdbd.conf.in" > "$CONF_DIR/slurmdbd.conf.tmp"
  chmod 600 "$CONF_DIR/slurmdbd.conf.tmp" && mv "$CONF_DIR/slurmdbd.conf.tmp" "$CONF_DIR/slurmdbd.conf"
  if ! { pid=$(cat "$BASE/run/slurmdbd.pid" 2>/dev/null) && kill -0 "$pid" 2>/dev/null; }; then
    /usr/sbin/slurmdbd
  fi
  for _ in $(seq 300); do (exec 3<>/dev/tcp/127.0.0.1/6819) 2>/dev/null && break; sleep 0.1; done
  echo "slurmdbd listening after $(elapsed)s"
fi

# ---- slurmctld + slurmd ----------------------------------------------------
running() { local pid; pid=$(cat "$1" 2>/dev/null) && kill -0 "$pid" 2>/dev/null; }
running "$BASE/run/slurmctld.pid" || /usr/sbin/slurmctld -i
running "$BASE/run/slurmd.pid" || /usr/sbin/slurmd -N localhost
for _ in $(seq 600); do
  [ "$(sinfo -h -n localhost -o '%T' 2>/dev/null)" = idle ] && break; sleep 0.1
done
[ "$(sinfo -h -n localhost -o '%T' 2>/dev/null)" = idle ] || { sinfo >&2 || true; die "node did not become idle"; }
if [ "$ACCOUNTING" = 1 ]; then
  for _ in $(seq 300); do sacct -n -X >/dev/null 2>&1 && break; sleep 0.1; done
  sacct -n -X >/dev/null 2>&1 || die "sacct does not answer"
fi
echo "cluster ready after $(elapsed)s"
sinfo
