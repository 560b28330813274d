/*
 * Copyright (C) Nexus authors
 *
 * nexusctl plans: what migrate needs of cli_plan.c.
 */

#ifndef CLI_PLAN_H
#define CLI_PLAN_H

#include <libpq-fe.h>


/*
 * Loads the built-in plan catalog (config/plans.json) if the plans table
 * exists and is empty; does nothing otherwise. Returns an exit code.
 */
int cli_plans_seed(PGconn *conn);


#endif /* CLI_PLAN_H */
