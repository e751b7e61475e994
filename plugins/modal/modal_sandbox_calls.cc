// The control-plane calls on one existing sandbox, V1 or V2 by the id's
// shape (IsV1SandboxId in modal_sandbox.h). The V2 RPCs take the V1
// messages (modal_proto/api.proto), so each call is one request built once
// and sent to one of two stubs.
#include <cctype>

#include "modal_sandbox.h"

namespace sandrun::modal {
namespace {

// Sends `request` as `v1_name` or `v1_name + "V2"`.
template <typename Request, typename Response, typename V1Call, typename V2Call>
Result<Response> Call(ControlPlane& control, const std::string& sandbox_id,
                      const std::string& v1_name, const Request& request, V1Call v1, V2Call v2) {
  const bool v1_sandbox = IsV1SandboxId(sandbox_id);
  Response response;
  SANDRUN_RETURN_IF_ERROR(control.Unary(
      v1_sandbox ? v1_name : v1_name + "V2", [&](grpc::ClientContext* context) {
        auto& stub = control.stub();
        return v1_sandbox ? (stub.*v1)(context, request, &response)
                          : (stub.*v2)(context, request, &response);
      }));
  return response;
}

using Stub = mc::ModalClient::Stub;

}  // namespace

bool IsV1SandboxId(std::string_view sandbox_id) {
  constexpr std::string_view kPrefix = "sb-";
  if (sandbox_id.size() != kPrefix.size() + 22 || sandbox_id.substr(0, kPrefix.size()) != kPrefix) {
    return false;
  }
  for (char c : sandbox_id.substr(kPrefix.size())) {
    if (!std::isalnum(static_cast<unsigned char>(c))) return false;
  }
  return true;
}

Status TerminateSandbox(ControlPlane& control, const std::string& sandbox_id) {
  mc::SandboxTerminateRequest request;
  request.set_sandbox_id(sandbox_id);
  return Call<mc::SandboxTerminateRequest, mc::SandboxTerminateResponse>(
             control, sandbox_id, "SandboxTerminate", request, &Stub::SandboxTerminate,
             &Stub::SandboxTerminateV2)
      .status();
}

Result<mc::SandboxWaitResponse> WaitSandbox(ControlPlane& control, const std::string& sandbox_id,
                                            float timeout_s) {
  mc::SandboxWaitRequest request;
  request.set_sandbox_id(sandbox_id);
  request.set_timeout(timeout_s);
  return Call<mc::SandboxWaitRequest, mc::SandboxWaitResponse>(
      control, sandbox_id, "SandboxWait", request, &Stub::SandboxWait, &Stub::SandboxWaitV2);
}

Result<mc::SandboxGetTaskIdResponse> SandboxTaskId(ControlPlane& control,
                                                   const std::string& sandbox_id) {
  mc::SandboxGetTaskIdRequest request;
  request.set_sandbox_id(sandbox_id);
  request.set_wait_until_ready(false);
  return Call<mc::SandboxGetTaskIdRequest, mc::SandboxGetTaskIdResponse>(
      control, sandbox_id, "SandboxGetTaskId", request, &Stub::SandboxGetTaskId,
      &Stub::SandboxGetTaskIdV2);
}

Result<std::map<std::string, std::string>> SandboxTags(ControlPlane& control,
                                                       const std::string& sandbox_id) {
  mc::SandboxTagsGetRequest request;
  request.set_sandbox_id(sandbox_id);
  SANDRUN_ASSIGN_OR_RETURN(
      mc::SandboxTagsGetResponse response,
      (Call<mc::SandboxTagsGetRequest, mc::SandboxTagsGetResponse>(
          control, sandbox_id, "SandboxTagsGet", request, &Stub::SandboxTagsGet,
          &Stub::SandboxTagsGetV2)));
  std::map<std::string, std::string> tags;
  for (const auto& tag : response.tags()) tags[tag.tag_name()] = tag.tag_value();
  return tags;
}

Result<RouterAccess> SandboxRouterAccess(ControlPlane& control, const std::string& sandbox_id,
                                         const std::string& task_id) {
  RouterAccess access;
  if (IsV1SandboxId(sandbox_id)) {
    mc::TaskGetCommandRouterAccessRequest request;
    request.set_task_id(task_id);
    mc::TaskGetCommandRouterAccessResponse response;
    SANDRUN_RETURN_IF_ERROR(control.Unary("TaskGetCommandRouterAccess", [&](grpc::ClientContext* c) {
      return control.stub().TaskGetCommandRouterAccess(c, request, &response);
    }));
    access.jwt = response.jwt();
    access.url = response.url();
  } else {
    mc::SandboxGetCommandRouterAccessRequest request;
    request.set_sandbox_id(sandbox_id);
    mc::SandboxGetCommandRouterAccessResponse response;
    SANDRUN_RETURN_IF_ERROR(
        control.Unary("SandboxGetCommandRouterAccess", [&](grpc::ClientContext* c) {
          return control.stub().SandboxGetCommandRouterAccess(c, request, &response);
        }));
    access.jwt = response.jwt();
    access.url = response.url();
  }
  return access;
}

}  // namespace sandrun::modal
