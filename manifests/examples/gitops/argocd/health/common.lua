-- Shared by every edgefleet health check (Argo CD runs each check as one chunk, so
-- hack/generate.py prepends this file to each kind's script in argocd-cm.yaml).
-- kstatus semantics: a status the controller has not looked at yet (no status, or
-- observedGeneration behind metadata.generation) is Progressing, never Healthy;
-- Stalled=True is Degraded; Ready=True is Healthy; anything else is Progressing.
local function condition(obj, type_)
  if obj.status == nil or obj.status.conditions == nil then
    return nil
  end
  for _, c in ipairs(obj.status.conditions) do
    if c.type == type_ then
      return c
    end
  end
  return nil
end

local function observed(obj)
  if obj.status == nil then
    return false
  end
  local generation = obj.metadata and obj.metadata.generation
  if generation == nil then
    return obj.status.observedGeneration ~= nil
  end
  return obj.status.observedGeneration ~= nil and obj.status.observedGeneration >= generation
end

local function verdict(status, message)
  return { status = status, message = message or "" }
end

local function is_true(c)
  return c ~= nil and c.status == "True"
end
