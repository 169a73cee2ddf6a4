-- Argo CD health of a vaultsync.dev VaultSecret, from its Ready condition.
-- Healthy: Ready=True. Degraded: Ready=False (the Secret keeps its last synced content; the message
-- says why). Progressing: not synced yet, or the spec changed since the status was written.
local hs = {}
if obj.status ~= nil and obj.status.conditions ~= nil then
  local generation = obj.metadata.generation
  local observed = obj.status.observedGeneration
  for _, condition in ipairs(obj.status.conditions) do
    if condition.type == "Ready" then
      if generation ~= nil and observed ~= nil and observed < generation then
        hs.status = "Progressing"
        hs.message = "Waiting for the operator to sync the changed spec"
        return hs
      end
      if condition.status == "True" then
        hs.status = "Healthy"
      elseif condition.status == "False" then
        hs.status = "Degraded"
      else
        hs.status = "Progressing"
      end
      hs.message = (condition.reason or "") .. ": " .. (condition.message or "")
      return hs
    end
  end
end
hs.status = "Progressing"
hs.message = "Waiting for the first sync"
return hs
