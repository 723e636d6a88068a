-- EdgeDevice: Healthy when online and running its desired workloads healthily;
-- Degraded when an update failed or the device is offline; Suspended when suspended.
if obj.spec ~= nil and obj.spec.suspended then
  return verdict("Suspended", "suspended: gets no new workloads and is locked out")
end
if not observed(obj) then
  return verdict("Progressing", "waiting for the device to enrol and report")
end
local stalled = condition(obj, "Stalled")
if is_true(stalled) then
  return verdict("Degraded", stalled.reason .. ": " .. (stalled.message or ""))
end
local failed = condition(obj, "UpdateFailed")
if is_true(failed) then
  return verdict("Degraded", failed.reason .. ": " .. (failed.message or ""))
end
local online = condition(obj, "Online")
if online ~= nil and online.status == "False" then
  return verdict("Degraded", "offline since " .. (obj.status.lastSeen or "unknown"))
end
local ready = condition(obj, "Ready")
if is_true(ready) then
  return verdict("Healthy", ready.message)
end
return verdict("Progressing", ready and ready.message or "waiting for the device")
