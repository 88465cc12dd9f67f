"""Workflow Sync: an open re-creation of Workflow Manager's Synchronize Job Data tool.

A registry plus parameter mapping (docs/design.md sections 2 and 6): the parameters, the
validation call, one call to ``wmsync.toolbox.run`` and the two derived outputs. Export
Job Data and Import Job Data (section 11) are as thin: parameters, one call, the status. The
``wmsync`` package sits beside this file. Keep this file ASCII.
"""

import os
import sys

# Pro's current directory is not the toolbox folder: make the wmsync beside it importable.
_HERE = os.path.dirname(os.path.abspath(__file__))
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

import arcpy  # noqa: E402

import wmsync.toolbox  # noqa: E402

# Refreshing the toolbox in Pro re-executes only this file: re-import a changed wmsync.
core = wmsync.toolbox.fresh_import("wmsync.toolbox")
toolset = wmsync.toolbox.fresh_import("wmsync.toolset_toolbox")

PARENT_URL = "Input_Parent_Repository_URL"
PARENT_NAME = "Input_Parent_Repository_Name"
CHILDREN = "Input_Multi_Name"
STATUS = "Output_SynchronizeReplicaStatus"
LAST_SYNC = "Output_LastSync"

#: The four columns of the child table and of Last Synchronized. last_sync_time is a
#: String, not a Date: a GPDate column is parsed with the system locale and would mangle
#: Esri's sample "2011-08-08 12:00"; wmsync.valuetable reads the time instead.
COLUMNS = [
    ["GPString", "child_repository"],
    ["GPString", "connected"],
    ["GPString", "URL"],
    ["GPString", "last_sync_time"],
]


class Toolbox:
    def __init__(self):
        self.label = "Workflow Sync"
        self.alias = "wmx"
        self.description = (
            "Synchronizes Workflow Manager job data between a parent repository and its "
            "child repositories (an open re-creation of Synchronize Job Data)."
        )
        self.tools = [
            SynchronizeJobData,
            ExportJobData,
            ImportJobData,
            CreateJobDataReplica,
            ClearJobReplicationInfo,
            ClusterStatus,
        ]


def _param(name, label, datatype, kind="Required", direction="Input"):
    return arcpy.Parameter(
        name=name, displayName=label, datatype=datatype, parameterType=kind, direction=direction
    )


class SynchronizeJobData:
    def __init__(self):
        self.label = "Synchronize Job Data"
        self.description = (
            "Two-way synchronization of a Workflow Manager cluster: every connected child's "
            "changes go to the parent, then the parent's consolidated changes go to all "
            "children."
        )

    def getParameterInfo(self):
        def param(name, label, datatype, kind="Required", direction="Input"):
            return arcpy.Parameter(
                name=name,
                displayName=label,
                datatype=datatype,
                parameterType=kind,
                direction=direction,
            )

        children = param(CHILDREN, "Input Multi Name", "GPValueTable")
        children.columns = [list(c) for c in COLUMNS]  # columns before filters
        children.filters[1].type = "ValueList"
        children.filters[1].list = ["true", "false"]
        last_sync = param(LAST_SYNC, "Last Synchronized", "GPValueTable", "Derived", "Output")
        last_sync.columns = [list(c) for c in COLUMNS]
        return [
            param(PARENT_URL, "Input Parent Repository URL", "GPString"),
            param(PARENT_NAME, "Input Parent Repository Name", "GPString"),
            children,
            param(STATUS, "Status of Replica Synchronization", "GPLong", "Derived", "Output"),
            last_sync,
        ]

    def isLicensed(self):
        return True

    def updateMessages(self, parameters):
        p = {param.name: param for param in parameters}
        core.update_messages(p[PARENT_URL], p[CHILDREN])

    def execute(self, parameters, messages):
        p = {param.name: param for param in parameters}
        result = core.run(
            arcpy,
            messages,
            p[PARENT_URL].valueAsText,
            p[PARENT_NAME].valueAsText,
            core.table_value(p[CHILDREN]),
        )
        p[STATUS].value = result.status
        p[LAST_SYNC].value = core.last_sync_table(arcpy, COLUMNS, result)


class ExportJobData:
    def __init__(self):
        self.label, self.description = core.EXPORT_TOOL

    def getParameterInfo(self):
        return core.file_tool_parameters(arcpy, core.EXPORT_PARAMETERS)

    def execute(self, parameters, messages):
        parameters[-1].value = core.run_export(arcpy, messages, *core.file_tool_values(parameters))


class ImportJobData:
    def __init__(self):
        self.label, self.description = core.IMPORT_TOOL

    def getParameterInfo(self):
        return core.file_tool_parameters(arcpy, core.IMPORT_PARAMETERS)

    def execute(self, parameters, messages):
        parameters[-1].value = core.run_import(arcpy, messages, *core.file_tool_values(parameters))


class CreateJobDataReplica:
    """Replicate Job Data: join children to a cluster (docs/design.md section 11)."""

    def __init__(self):
        self.label = "Replicate Job Data"
        self.description = (
            "Joins child repositories to a parent's cluster: checks that each belongs "
            "to no other cluster, registers it, gives it its job id block and exchanges "
            "everything both ways."
        )

    def getParameterInfo(self):
        children = _param(CHILDREN, "Input Multi Name", "GPValueTable")
        children.columns = [list(c) for c in toolset.CHILD_COLUMNS]
        children.filters[1].type = "ValueList"
        children.filters[1].list = ["true", "false"]
        last_sync = _param(LAST_SYNC, "Last Synchronized", "GPValueTable", "Derived", "Output")
        last_sync.columns = [list(c) for c in COLUMNS]
        return [
            _param(PARENT_URL, "Input Parent Repository URL", "GPString"),
            _param(PARENT_NAME, "Input Parent Repository Name", "GPString"),
            children,
            _param(
                "Output_CreateReplicaStatus", "Create Replica Status", "GPLong", "Derived", "Output"
            ),
            last_sync,
        ]

    def isLicensed(self):
        return True

    def updateMessages(self, parameters):
        p = {param.name: param for param in parameters}
        toolset.update_replicate_messages(p[PARENT_URL], p[CHILDREN])

    def execute(self, parameters, messages):
        p = {param.name: param for param in parameters}
        status, rows = toolset.run_replicate(
            arcpy,
            messages,
            p[PARENT_URL].valueAsText,
            p[PARENT_NAME].valueAsText,
            core.table_value(p[CHILDREN]),
        )
        p["Output_CreateReplicaStatus"].value = status
        p[LAST_SYNC].value = toolset.last_sync_table(arcpy, rows)


class ClearJobReplicationInfo:
    """Clear Job Replication Information: leave a cluster (docs/design.md section 11)."""

    def __init__(self):
        self.label = "Clear Job Replication Information"
        self.description = (
            "Removes replication information: one child from a cluster, a whole cluster "
            "(given its parent), or one repository's own rows. Jobs are never deleted."
        )

    def getParameterInfo(self):
        return [
            _param("Input_Repository_URL", "Input Repository URL", "GPString"),
            _param("Input_Repository_Name", "Input Repository Name", "GPString", "Optional"),
            _param("Input_Child_Name", "Input Child Repository Name", "GPString", "Optional"),
            _param("Output_ClearStatus", "Clear Status", "GPLong", "Derived", "Output"),
        ]

    def isLicensed(self):
        return True

    def updateMessages(self, parameters):
        toolset.check_url_parameter(parameters[0], "repository")

    def execute(self, parameters, messages):
        url, name, child = (parameters[i].valueAsText for i in range(3))
        parameters[3].value = toolset.run_clear(arcpy, messages, url, name, child)


class ClusterStatus:
    """Cluster Status: every repository of a cluster at a glance (docs/design.md 11)."""

    def __init__(self):
        self.label = "Cluster Status"
        self.description = (
            "Per repository of a cluster: role, URL, job id block, last synchronization, "
            "elements waiting in each direction, conflicts, reachable or not. Changes "
            "nothing."
        )

    def getParameterInfo(self):
        table = _param(
            "Output_ClusterStatus", "Cluster Status", "GPValueTable", "Derived", "Output"
        )
        table.columns = [list(c) for c in toolset.STATUS_COLUMNS]
        return [
            _param(PARENT_URL, "Input Parent Repository URL", "GPString"),
            _param(PARENT_NAME, "Input Parent Repository Name", "GPString"),
            _param("Input_Max_Age_Hours", "Maximum Age (hours)", "GPDouble", "Optional"),
            _param("Output_Status", "Cluster Health", "GPLong", "Derived", "Output"),
            table,
        ]

    def isLicensed(self):
        return True

    def updateMessages(self, parameters):
        toolset.check_url_parameter(parameters[0], "parent")
        age = parameters[2]
        if age.value is not None and not age.hasError() and not age.value > 0:
            age.setErrorMessage("the maximum age must be more than 0 hours")

    def execute(self, parameters, messages):
        code, table = toolset.run_status(
            arcpy,
            messages,
            parameters[0].valueAsText,
            parameters[1].valueAsText,
            parameters[2].value,
        )
        parameters[3].value = code
        parameters[4].value = table
