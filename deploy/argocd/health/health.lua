-- Argo CD health check for automq.rs resources (AutoMQCluster, AnalyticsWarehouse, TopicLink).
-- Argo CD runs it with the live object in `obj` and reads the returned table's status/message.
-- Written for Lua 5.1 (Argo CD embeds gopher-lua) with only the base, string and table libs.
--
-- The operator reports status as the Kubernetes API conventions describe: status.observedGeneration
-- and conditions Ready, Progressing and Degraded (crds/src/condition.rs). Rules, in order:
--   1. no status yet                                  -> Progressing
--   2. Degraded=True                                  -> Degraded ("reason: message")
--   3. status.observedGeneration < metadata.generation -> Progressing (the spec change is unseen)
--   4. Ready=True                                     -> Healthy
--   5. anything else                                  -> Progressing (Progressing's or Ready's message)
-- Degraded is checked before the generation so a failure stays visible while a fix rolls out.
-- The three kinds share these rules, so one script serves them all: deploy/argocd/argocd-cm-health.yaml
-- embeds it once per kind (`test.sh --write` regenerates it), and test.sh runs every sample against
-- each embedded copy.

local hs = {}

local function find_condition(conditions, wanted)
  if type(conditions) ~= "table" then
    return nil
  end
  for _, c in ipairs(conditions) do
    if type(c) == "table" and c.type == wanted then
      return c
    end
  end
  return nil
end

local function is_true(c)
  return c ~= nil and c.status == "True"
end

local function nonempty(s)
  return type(s) == "string" and s ~= ""
end

-- A condition's message, else its reason, else `fallback`.
local function describe(c, fallback)
  if c ~= nil and nonempty(c.message) then
    return c.message
  end
  if c ~= nil and nonempty(c.reason) then
    return c.reason
  end
  return fallback
end

-- Generations arrive as float64 in gopher-lua: print them without a decimal part.
local function generation_text(n)
  if type(n) == "number" then
    return string.format("%d", n)
  end
  return "none"
end

local status = obj.status
if type(status) ~= "table" then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to report status"
  return hs
end

local conditions = status.conditions
local degraded = find_condition(conditions, "Degraded")
if is_true(degraded) then
  hs.status = "Degraded"
  if nonempty(degraded.reason) and nonempty(degraded.message) then
    hs.message = degraded.reason .. ": " .. degraded.message
  else
    hs.message = describe(degraded, "Degraded")
  end
  return hs
end

local generation = nil
if type(obj.metadata) == "table" then
  generation = obj.metadata.generation
end
local observed = status.observedGeneration
if type(generation) == "number" and (type(observed) ~= "number" or observed < generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. generation_text(generation)
    .. " (observed: " .. generation_text(observed) .. ")"
  return hs
end

local ready = find_condition(conditions, "Ready")
if is_true(ready) then
  hs.status = "Healthy"
  hs.message = describe(ready, "Ready")
  return hs
end

local progressing = find_condition(conditions, "Progressing")
hs.status = "Progressing"
if is_true(progressing) and describe(progressing, nil) ~= nil then
  hs.message = describe(progressing, nil)
else
  hs.message = describe(ready, "Waiting for the Ready condition")
end
return hs
