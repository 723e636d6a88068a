-- InferenceModel: Healthy once built and signed for the current spec.
if not observed(obj) then
  return verdict("Progressing", "waiting for the operator to observe this generation")
end
local stalled = condition(obj, "Stalled")
if is_true(stalled) then
  return verdict("Degraded", stalled.reason .. ": " .. (stalled.message or ""))
end
local ready = condition(obj, "Ready")
if is_true(ready) then
  return verdict("Healthy", ready.message)
end
local reconciling = condition(obj, "Reconciling")
if reconciling ~= nil then
  return verdict("Progressing", reconciling.message)
end
return verdict("Progressing", "building")
