/*
 * Copyright (C) Nexus authors
 *
 * nexusctl migrate: applies migrations/NNNN_name.sql files in numeric
 * order. Each file runs in its own transaction together with its row in
 * schema_migrations, so a file is either applied and recorded or not at
 * all. A session advisory lock serializes concurrent runs: the second
 * waits, then finds nothing left to do.
 */

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "nexusctl.h"
#include "cli_db.h"
#include "cli_opt.h"
#include "cli_out.h"
#include "cli_plan.h"


#define CLI_MIGRATE_DIR_ENV  "NEXUS_MIGRATIONS_DIR"

/* a migration file larger than this is a mistake */
#define CLI_MIGRATE_MAX_SIZE  (16 * 1024 * 1024)

/* pg_advisory_lock key: "nexusmig" as a big-endian int8 */
#define CLI_MIGRATE_LOCK     "7954896762662906215"


typedef struct {
    int     version;
    int     applied;
    char   *file;               /* "0001_tenants_and_keys.sql" */
} cli_migration_t;

typedef struct {
    cli_migration_t  *elts;
    size_t            nelts;
    size_t            nalloc;
} cli_migrations_t;


static int cli_migrate_dir(const char *arg, char *dir, size_t size);
static int cli_migrate_is_dir(const char *path);
static int cli_migrate_scan(const char *dir, cli_migrations_t *m);
static int cli_migrate_parse_name(const char *name, int *version);
static int cli_migrate_cmp(const void *a, const void *b);
static void cli_migrations_free(cli_migrations_t *m);
static int cli_migrate_lock(PGconn *conn);
static int cli_migrate_applied(PGconn *conn, cli_migrations_t *m,
    const char *dir, int *napplied);
static int cli_migrate_apply(PGconn *conn, const char *dir,
    const cli_migration_t *mig);
static char *cli_migrate_read(const char *dir, const char *file);
static int cli_migrate_drain(PGconn *conn, PGresult *res);
static void cli_migrate_error(const cli_migration_t *mig, PGconn *conn,
    const PGresult *res, const char *body);


static const struct option  cli_migrate_opts[] = {
    { "dir",        required_argument,  NULL,  'd' },
    { NULL,         0,                  NULL,  0 }
};


int
cli_migrate(int argc, char **argv)
{
    int                rc, napplied, nnew;
    char               dir[PATH_MAX];
    size_t             i;
    PGconn            *conn;
    PGresult          *res;
    const char        *arg;
    cli_migrations_t   m;

    arg = NULL;

    rc = cli_opt_read(argc, argv, cli_migrate_opts,
                      (void *[]) { &arg });
    if (rc != -1) {
        return rc;
    }

    if (cli_migrate_dir(arg, dir, sizeof(dir)) != 0) {
        return CLI_USAGE;
    }

    memset(&m, 0, sizeof(cli_migrations_t));
    napplied = 0;
    conn = NULL;

    rc = cli_migrate_scan(dir, &m);
    if (rc != CLI_OK) {
        goto done;
    }

    conn = cli_db_connect(&rc);
    if (conn == NULL) {
        goto done;
    }

    rc = cli_migrate_lock(conn);
    if (rc != CLI_OK) {
        goto done;
    }

    res = cli_db_exec(conn,
              "CREATE TABLE IF NOT EXISTS schema_migrations ("
              " version     int          PRIMARY KEY,"
              " name        text         NOT NULL,"
              " applied_at  timestamptz  NOT NULL DEFAULT now())",
              0, NULL);

    if (!cli_db_ok(res)) {
        rc = cli_db_fail(conn, res, "cannot create schema_migrations");
        PQclear(res);
        goto done;
    }

    PQclear(res);

    rc = cli_migrate_applied(conn, &m, dir, &napplied);
    if (rc != CLI_OK) {
        goto done;
    }

    nnew = 0;

    for (i = 0; i < m.nelts; i++) {

        if (m.elts[i].applied) {
            continue;
        }

        rc = cli_migrate_apply(conn, dir, &m.elts[i]);
        if (rc != CLI_OK) {
            goto done;
        }

        printf("migrate: applied %s\n", m.elts[i].file);

        if (cli_flush() != 0) {
            rc = CLI_FAILED;
            goto done;
        }

        nnew++;
    }

    if (nnew == 0) {
        printf("migrate: up to date (%d applied)\n", napplied);

        if (cli_flush() != 0) {
            rc = CLI_FAILED;
            goto done;
        }
    }

    /* a new database gets the built-in plan catalog */
    rc = cli_plans_seed(conn);

done:

    /* closing the session releases the advisory lock */
    cli_db_close(conn);
    cli_migrations_free(&m);

    return rc;
}


/*
 * --dir, else $NEXUS_MIGRATIONS_DIR, else ../migrations relative to the
 * binary (build/nexusctl in a source tree), else ./migrations.
 */

static int
cli_migrate_dir(const char *arg, char *dir, size_t size)
{
    char         exe[PATH_MAX], *p;
    ssize_t      n;
    const char  *env, *what;

    env = getenv(CLI_MIGRATE_DIR_ENV);

    if (arg != NULL || (env != NULL && env[0] != '\0')) {
        what = (arg != NULL) ? "--dir" : CLI_MIGRATE_DIR_ENV;

        if (arg == NULL) {
            arg = env;
        }

        if ((size_t) snprintf(dir, size, "%s", arg) >= size) {
            cli_error("%s: path too long", what);
            return -1;
        }

        if (!cli_migrate_is_dir(dir)) {
            cli_error("%s: \"%s\" is not a directory", what, cli_quote(dir));
            return -1;
        }

        return 0;
    }

    n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);

    if (n > 0) {
        exe[n] = '\0';

        p = strrchr(exe, '/');
        if (p != NULL) {
            *p = '\0';

            if ((size_t) snprintf(dir, size, "%s/../migrations", exe) < size
                && cli_migrate_is_dir(dir))
            {
                return 0;
            }
        }
    }

    snprintf(dir, size, "migrations");

    if (cli_migrate_is_dir(dir)) {
        return 0;
    }

    cli_error("no migrations directory found: use --dir or set "
              CLI_MIGRATE_DIR_ENV);

    return -1;
}


static int
cli_migrate_is_dir(const char *path)
{
    struct stat  st;

    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}


/*
 * Collects the *.sql files of dir sorted by version. Any other .sql name
 * and two files with one version are errors rather than being skipped: a
 * migration that silently never runs is worse than a refusal.
 */

static int
cli_migrate_scan(const char *dir, cli_migrations_t *m)
{
    int               version, rc;
    DIR              *d;
    size_t            i, len;
    struct dirent    *de;
    cli_migration_t  *mig;

    d = opendir(dir);
    if (d == NULL) {
        cli_error("cannot open \"%s\": %s", cli_quote(dir), strerror(errno));
        return CLI_USAGE;
    }

    rc = CLI_FAILED;

    while ((de = readdir(d)) != NULL) {

        len = strlen(de->d_name);

        if (len < 4 || strcmp(de->d_name + len - 4, ".sql") != 0) {
            continue;
        }

        if (cli_migrate_parse_name(de->d_name, &version) != 0) {
            cli_error("migration \"%s\" in \"%s\" is not named "
                      "NNNN_name.sql", cli_quote(de->d_name), cli_quote(dir));
            goto failed;
        }

        if (m->nelts == m->nalloc) {
            m->nalloc = m->nalloc ? m->nalloc * 2 : 16;
            mig = realloc(m->elts, m->nalloc * sizeof(cli_migration_t));

            if (mig == NULL) {
                cli_error("out of memory");
                goto failed;
            }

            m->elts = mig;
        }

        mig = &m->elts[m->nelts];
        mig->version = version;
        mig->applied = 0;
        mig->file = strdup(de->d_name);

        if (mig->file == NULL) {
            cli_error("out of memory");
            goto failed;
        }

        m->nelts++;
    }

    if (m->nelts == 0) {
        cli_error("no migrations (NNNN_name.sql) in \"%s\"", cli_quote(dir));
        rc = CLI_USAGE;
        goto failed;
    }

    qsort(m->elts, m->nelts, sizeof(cli_migration_t), cli_migrate_cmp);

    for (i = 1; i < m->nelts; i++) {
        if (m->elts[i].version == m->elts[i - 1].version) {
            cli_error("migrations \"%s\" and \"%s\" have the same version",
                      cli_quote(m->elts[i - 1].file),
                      cli_quote(m->elts[i].file));
            goto failed;
        }
    }

    closedir(d);

    return CLI_OK;

failed:

    closedir(d);

    return rc;
}


/* "<digits>_<name>.sql", the name made of [A-Za-z0-9_.-] */

static int
cli_migrate_parse_name(const char *name, int *version)
{
    long         v;
    size_t       ndigits, len, i;
    const char  *p;

    ndigits = strspn(name, "0123456789");

    if (ndigits == 0 || ndigits > 9 || name[ndigits] != '_') {
        return -1;
    }

    p = name + ndigits + 1;
    len = strlen(p) - 4;            /* ".sql", checked by the caller */

    if (len == 0) {
        return -1;
    }

    for (i = 0; i < len; i++) {
        if (strchr("abcdefghijklmnopqrstuvwxyz"
                   "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
                   "0123456789_.-", p[i]) == NULL)
        {
            return -1;
        }
    }

    v = strtol(name, NULL, 10);

    if (v < 0 || v > INT_MAX) {
        return -1;
    }

    *version = (int) v;

    return 0;
}


static int
cli_migrate_cmp(const void *a, const void *b)
{
    const cli_migration_t  *ma = a, *mb = b;

    return (ma->version > mb->version) - (ma->version < mb->version);
}


static void
cli_migrations_free(cli_migrations_t *m)
{
    size_t  i;

    for (i = 0; i < m->nelts; i++) {
        free(m->elts[i].file);
    }

    free(m->elts);
}


/*
 * Try first, so that an operator whose migrate waits behind another one
 * knows why.
 */

static int
cli_migrate_lock(PGconn *conn)
{
    int          rc;
    PGresult    *res;
    const char  *values[1];

    values[0] = CLI_MIGRATE_LOCK;

    res = cli_db_exec(conn, "SELECT pg_try_advisory_lock($1::bigint)",
                      1, values);

    if (!cli_db_ok(res)) {
        rc = cli_db_fail(conn, res, "cannot take the migration lock");
        PQclear(res);
        return rc;
    }

    if (PQgetvalue(res, 0, 0)[0] == 't') {
        PQclear(res);
        return CLI_OK;
    }

    PQclear(res);

    fprintf(stderr, "migrate: waiting for another migrate to finish\n");

    res = cli_db_exec(conn, "SELECT pg_advisory_lock($1::bigint)",
                      1, values);

    rc = cli_db_ok(res)
         ? CLI_OK
         : cli_db_fail(conn, res, "cannot take the migration lock");

    PQclear(res);

    return rc;
}


/*
 * Marks the migrations already recorded in schema_migrations, counts them
 * and warns about recorded versions that the directory lacks or names
 * differently.
 */

static int
cli_migrate_applied(PGconn *conn, cli_migrations_t *m, const char *dir,
    int *napplied)
{
    int          rc, row, nrows, version, found;
    size_t       i;
    PGresult    *res;
    const char  *name;

    res = cli_db_exec(conn,
              "SELECT version, name FROM schema_migrations ORDER BY version",
              0, NULL);

    if (!cli_db_ok(res)) {
        rc = cli_db_fail(conn, res, "cannot read schema_migrations");
        PQclear(res);
        return rc;
    }

    nrows = PQntuples(res);

    for (row = 0; row < nrows; row++) {
        version = atoi(PQgetvalue(res, row, 0));
        name = PQgetvalue(res, row, 1);
        found = 0;

        for (i = 0; i < m->nelts; i++) {
            if (m->elts[i].version != version) {
                continue;
            }

            m->elts[i].applied = 1;
            found = 1;

            if (strcmp(m->elts[i].file, name) != 0) {
                cli_warn("migration %04d was applied as \"%s\" but is now "
                         "\"%s\"", version, cli_quote(name),
                         cli_quote(m->elts[i].file));
            }

            break;
        }

        if (!found) {
            cli_warn("applied migration \"%s\" is not in \"%s\"",
                     cli_quote(name), cli_quote(dir));
        }
    }

    *napplied = nrows;

    PQclear(res);

    return CLI_OK;
}


static int
cli_migrate_apply(PGconn *conn, const char *dir, const cli_migration_t *mig)
{
    int          rc;
    char        *body, version[16];
    PGresult    *res;
    const char  *values[2];

    body = cli_migrate_read(dir, mig->file);
    if (body == NULL) {
        return CLI_FAILED;
    }

    rc = cli_db_begin(conn);
    if (rc != CLI_OK) {
        free(body);
        return rc;
    }

    /* the one place SQL is not parameterized: the file is a script */
    res = PQexec(conn, body);

    if (cli_migrate_drain(conn, res) != 0) {
        cli_migrate_error(mig, conn, res, body);
        rc = (PQstatus(conn) == CONNECTION_BAD) ? CLI_UNREACHABLE
                                                : CLI_FAILED;
        goto failed;
    }

    PQclear(res);
    res = NULL;

    if (PQtransactionStatus(conn) != PQTRANS_INTRANS) {
        cli_error("migration %s failed: it ends the transaction (COMMIT or "
                  "ROLLBACK in the file?) and may be partly applied",
                  mig->file);
        rc = CLI_FAILED;
        goto failed;
    }

    snprintf(version, sizeof(version), "%d", mig->version);
    values[0] = version;
    values[1] = mig->file;

    res = cli_db_exec(conn,
              "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
              2, values);

    if (!cli_db_ok(res)) {
        cli_migrate_error(mig, conn, res, NULL);
        rc = (PQstatus(conn) == CONNECTION_BAD) ? CLI_UNREACHABLE
                                                : CLI_FAILED;
        goto failed;
    }

    PQclear(res);
    free(body);

    rc = cli_db_commit(conn);

    if (rc != CLI_OK) {
        cli_error("migration %s failed: not committed", mig->file);
    }

    return rc;

failed:

    PQclear(res);
    free(body);
    cli_db_rollback(conn);

    return rc;
}


static char *
cli_migrate_read(const char *dir, const char *file)
{
    char         path[PATH_MAX], *body;
    FILE        *f;
    size_t       n;
    struct stat  st;

    if ((size_t) snprintf(path, sizeof(path), "%s/%s", dir, file)
        >= sizeof(path))
    {
        cli_error("migration %s: path too long", file);
        return NULL;
    }

    f = fopen(path, "r");
    if (f == NULL) {
        cli_error("cannot open migration %s: %s", file, strerror(errno));
        return NULL;
    }

    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)
        || st.st_size > CLI_MIGRATE_MAX_SIZE)
    {
        cli_error("migration %s is not a regular file of at most %d MiB",
                  file, CLI_MIGRATE_MAX_SIZE / (1024 * 1024));
        fclose(f);
        return NULL;
    }

    body = malloc((size_t) st.st_size + 1);
    if (body == NULL) {
        cli_error("out of memory");
        fclose(f);
        return NULL;
    }

    n = fread(body, 1, (size_t) st.st_size, f);

    if (ferror(f) || n != (size_t) st.st_size) {
        cli_error("cannot read migration %s", file);
        free(body);
        fclose(f);
        return NULL;
    }

    fclose(f);

    body[n] = '\0';

    if (strlen(body) != n) {
        cli_error("migration %s contains a NUL byte", file);
        free(body);
        return NULL;
    }

    return body;
}


/*
 * Checks the result of the script. COPY is not supported in migrations;
 * if a file starts one, end it so that the connection can roll back.
 * Returns 0 on success.
 */

static int
cli_migrate_drain(PGconn *conn, PGresult *res)
{
    char      *buf;
    PGresult  *r;

    if (res == NULL) {
        return -1;
    }

    switch (PQresultStatus(res)) {

    case PGRES_COMMAND_OK:
    case PGRES_TUPLES_OK:
    case PGRES_EMPTY_QUERY:
        return 0;

    case PGRES_COPY_IN:
        PQputCopyEnd(conn, "COPY is not supported in migrations");
        break;

    case PGRES_COPY_OUT:
        while (PQgetCopyData(conn, &buf, 0) > 0) {
            PQfreemem(buf);
        }

        break;

    default:
        return -1;
    }

    while ((r = PQgetResult(conn)) != NULL) {
        PQclear(r);
    }

    return -1;
}


/*
 * "nexusctl: migration 0002_x.sql failed: <message> (line N)", then the
 * server's detail and hint if any: unlike key rows, a schema error's
 * detail is safe and useful to show.
 */

static void
cli_migrate_error(const cli_migration_t *mig, PGconn *conn,
    const PGresult *res, const char *body)
{
    long         pos, line;
    const char  *msg, *detail, *hint, *p, *where;

    if (res != NULL && (PQresultStatus(res) == PGRES_COPY_IN
                        || PQresultStatus(res) == PGRES_COPY_OUT))
    {
        cli_error("migration %s failed: COPY is not supported in "
                  "migrations", mig->file);
        return;
    }

    msg = cli_db_message(conn, res);
    line = 0;

    where = (res != NULL)
            ? PQresultErrorField(res, PG_DIAG_STATEMENT_POSITION) : NULL;

    if (where != NULL && body != NULL) {

        /* the position counts characters (UTF-8), from 1 */

        pos = strtol(where, NULL, 10);
        line = 1;

        for (p = body; *p != '\0' && pos > 1; p++) {
            if (((unsigned char) *p & 0xc0) == 0x80) {
                continue;
            }

            if (*p == '\n') {
                line++;
            }

            pos--;
        }
    }

    if (line > 0) {
        cli_error("migration %s failed: %s (line %ld)", mig->file, msg, line);

    } else {
        cli_error("migration %s failed: %s", mig->file, msg);
    }

    if (res == NULL) {
        return;
    }

    detail = PQresultErrorField(res, PG_DIAG_MESSAGE_DETAIL);
    hint = PQresultErrorField(res, PG_DIAG_MESSAGE_HINT);

    if (detail != NULL) {
        cli_error("detail: %s", detail);
    }

    if (hint != NULL) {
        cli_error("hint: %s", hint);
    }
}
