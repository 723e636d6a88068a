-- Rollout: Healthy only when every selected device runs the new version; Degraded when
-- aborted or stalled; Suspended while paused (spec.paused, or a pause step).
if not observed(obj) then
  return verdict("Progressing", "waiting for the rollout controller to observe this generation")
end
local aborted = condition(obj, "Aborted")
if is_true(aborted) then
  return verdict("Degraded", aborted.reason .. ": " .. (aborted.message or ""))
end
local stalled = condition(obj, "Stalled")
if is_true(stalled) then
  return verdict("Degraded", stalled.reason .. ": " .. (stalled.message or ""))
end
local ready = condition(obj, "Ready")
if is_true(ready) then
  return verdict("Healthy", ready.message)
end
if obj.status.phase == "Paused" then
  return verdict("Suspended", obj.status.message)
end
local progressing = condition(obj, "Progressing")
return verdict("Progressing", progressing and progressing.message or obj.status.message)
