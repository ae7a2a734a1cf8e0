-- Argo CD health check for embedding-operator.dev/DeploymentEmbedding (docs/gitops.md).
-- Healthy: Ready (a finished run, or waiting for a run request). Progressing: a run in progress,
-- or the operator has not yet seen the latest spec. Degraded: the run failed (Stalled).
local hs = {}
if obj.status == nil or obj.status.conditions == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to record a status"
  return hs
end
if obj.metadata.generation ~= nil and obj.status.observedGeneration ~= obj.metadata.generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. obj.metadata.generation
  return hs
end
local conditions = {}
for _, c in ipairs(obj.status.conditions) do
  conditions[c.type] = c
end
local function say(c)
  return (c.reason or "") .. ": " .. (c.message or "")
end
if conditions.Stalled ~= nil and conditions.Stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = say(conditions.Stalled)
elseif conditions.Reconciling ~= nil and conditions.Reconciling.status == "True" then
  hs.status = "Progressing"
  hs.message = say(conditions.Reconciling)
elseif conditions.Ready ~= nil and conditions.Ready.status == "True" then
  hs.status = "Healthy"
  hs.message = say(conditions.Ready)
elseif conditions.Ready ~= nil and conditions.Ready.status == "False" then
  hs.status = "Degraded"
  hs.message = say(conditions.Ready)
else
  hs.status = "Progressing"
  hs.message = "Waiting for the Ready condition"
end
return hs
