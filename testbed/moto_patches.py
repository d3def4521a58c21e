"""Where moto's CloudFormation differs from AWS in a way `serverless deploy` of this stack meets.

One function per gap, each naming it; `apply()` installs them all before the server starts. The stack's
template is never bent to suit the emulator: what AWS does, the patch does, and no more.
"""

import json
from typing import Any, Callable


def validate_template_reports_errors_only() -> None:
    """Gap: moto's ValidateTemplate runs cfn-lint and refuses the template on its first match, warnings
    included (osls's redundant DependsOn, W3005), and words the refusal "Stack with id <message> does not
    exist". CloudFormation refuses only a template it cannot process, and says why. Keep cfn-lint's errors
    (E...), drop its warnings and notes, and refuse with the error's own words and where it is."""
    from moto.cloudformation import models
    from moto.cloudformation.exceptions import ValidationError

    original = models.CloudFormationBackend.validate_template

    def validate_template(self: Any, template: str) -> list[Any]:
        errors = [m for m in original(self, template) if m.rule.id.startswith("E")]
        if errors:
            where = "/".join(str(p) for p in getattr(errors[0], "path", []) or [])
            raise ValidationError(message=f"Template error: {errors[0].message}" + (f" (at {where})" if where else ""))
        return errors

    models.CloudFormationBackend.validate_template = validate_template  # type: ignore[method-assign]


def parameters_resolve_as_strings() -> None:
    """Gap: moto resolves a Number parameter to a Python number and leaves a CommaDelimitedList default
    unsplit. In CloudFormation a parameter's value is a string wherever the template uses it (a Number is
    only validated as one: `!FindInMap [ClusterSizes, !Ref ClusterSize, MaxSize]` looks up the key "3"), and
    a CommaDelimitedList is a list, whether passed or defaulted."""
    from moto.cloudformation import parsing

    original = parsing.ResourceMap.load_parameters

    def load_parameters(self: Any) -> None:
        original(self)
        for name, slot in self._template.get("Parameters", {}).items():
            value = self.resolved_parameters.get(name)
            kind = slot.get("Type", "String")
            if kind == "Number" and isinstance(value, (int, float)):
                value = str(value)
            elif kind == "CommaDelimitedList" and isinstance(value, str):
                value = value.split(",")
            self.resolved_parameters[name] = value
        self._parsed_resources.update(self.resolved_parameters)

    parsing.ResourceMap.load_parameters = load_parameters  # type: ignore[method-assign]


def load_balancer_keeps_its_type() -> None:
    """Gap: moto's AWS::ElasticLoadBalancingV2::LoadBalancer ignores `Type` (and the attributes), so a
    `network` load balancer becomes an `application` one and its TCP listener is refused. Pass the type,
    then set the attributes through the API, as CloudFormation does."""
    from moto.elbv2 import models

    def create_from_cloudformation_json(cls: Any, resource_name: str, cloudformation_json: Any, account_id: str, region_name: str, **kwargs: Any) -> Any:
        properties = cloudformation_json["Properties"]
        backend = models.elbv2_backends[account_id][region_name]
        load_balancer = backend.create_load_balancer(
            resource_name,
            properties.get("SecurityGroups") or [],
            properties.get("Subnets") or [],
            scheme=properties.get("Scheme", "internet-facing"),
            loadbalancer_type=properties.get("Type", "application"),
        )
        attributes = {a["Key"]: a["Value"] for a in properties.get("LoadBalancerAttributes") or []}
        if attributes:
            backend.modify_load_balancer_attributes(load_balancer.arn, attributes)
        return load_balancer

    models.FakeLoadBalancer.create_from_cloudformation_json = classmethod(create_from_cloudformation_json)  # type: ignore[assignment]


def target_group_has_its_attributes() -> None:
    """Gap: moto's AWS::ElasticLoadBalancingV2::TargetGroup answers no Fn::GetAtt, so the quorum alarm's
    `TargetGroupFullName` dimension fails the deploy. Answer the attributes CloudFormation documents."""
    from moto.elbv2 import models

    def get_cfn_attribute(self: Any, attribute_name: str) -> Any:
        if attribute_name == "TargetGroupFullName":
            return self.arn.split(":")[-1]
        if attribute_name == "TargetGroupName":
            return self.name
        if attribute_name == "TargetGroupArn":
            return self.arn
        if attribute_name == "LoadBalancerArns":
            return list(self.load_balancer_arns)
        raise NotImplementedError(attribute_name)

    models.FakeTargetGroup.get_cfn_attribute = get_cfn_attribute  # type: ignore[attr-defined]
    models.FakeTargetGroup.has_cfn_attr = classmethod(lambda cls, attr: attr in ("TargetGroupFullName", "TargetGroupName", "TargetGroupArn", "LoadBalancerArns"))  # type: ignore[assignment]


def function_keeps_its_architecture() -> None:
    """Gap: moto's AWS::Lambda::Function drops `Architectures`, so an arm64 function becomes x86_64."""
    from moto.awslambda import models

    original = models.LambdaFunction.create_from_cloudformation_json.__func__  # type: ignore[attr-defined]

    def create_from_cloudformation_json(cls: Any, resource_name: str, cloudformation_json: Any, account_id: str, region_name: str, **kwargs: Any) -> Any:
        function = original(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs)
        architectures = cloudformation_json["Properties"].get("Architectures")
        if architectures:
            function.architectures = architectures
        return function

    models.LambdaFunction.create_from_cloudformation_json = classmethod(create_from_cloudformation_json)  # type: ignore[assignment]


def lambda_version_refs_its_arn() -> None:
    """Gap: `Ref` to moto's AWS::Lambda::Version gives the logical ID, so the functions' QualifiedArn
    outputs are not ARNs. CloudFormation's Ref is the version's ARN (function ARN and version number)."""
    from moto.awslambda import models

    def create_from_cloudformation_json(cls: Any, resource_name: str, cloudformation_json: Any, account_id: str, region_name: str, **kwargs: Any) -> Any:
        function = models.get_backend(account_id, region_name).publish_version(cloudformation_json["Properties"]["FunctionName"])
        version = cls({"Version": function.version})
        version.physical_resource_id = function.function_arn if function.function_arn.endswith(f":{function.version}") else f"{function.function_arn}:{function.version}"
        return version

    models.LambdaVersion.create_from_cloudformation_json = classmethod(create_from_cloudformation_json)  # type: ignore[assignment]


def outputs_follow_change_sets() -> None:
    """Gap: moto builds a stack's outputs when the stack is created, and `serverless deploy` creates it
    empty, then executes change sets: the outputs stay empty (or stale after an update). CloudFormation
    evaluates the outputs of the template each change set applied."""
    from moto.cloudformation import models

    original = models.CloudFormationBackend.execute_change_set

    def execute_change_set(self: Any, change_set_name: str, stack_name: str | None = None) -> None:
        original(self, change_set_name, stack_name)
        for stack in self.stacks.values():
            if stack.name == stack_name or stack.stack_id == stack_name or any(
                c.stack is stack and change_set_name in (c.change_set_id, c.change_set_name) for c in self.change_sets.values()
            ):
                stack._parse_template()
                stack.output_map = stack._create_output_map()

    models.CloudFormationBackend.execute_change_set = execute_change_set  # type: ignore[method-assign]


def bucket_applies_its_settings() -> None:
    """Gap: moto's AWS::S3::Bucket applies only BucketEncryption and Tags; it drops versioning, the public
    access block, object ownership and the lifecycle rules without a word. Apply them as the S3 API would."""
    from moto.s3 import models

    original = models.FakeBucket.create_from_cloudformation_json.__func__  # type: ignore[attr-defined]

    def create_from_cloudformation_json(cls: Any, resource_name: str, cloudformation_json: Any, account_id: str, region_name: str, **kwargs: Any) -> Any:
        bucket = original(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs)
        properties = cloudformation_json.get("Properties", {})
        backend = models.s3_backends[account_id][models.get_partition(region_name)]
        versioning = properties.get("VersioningConfiguration")
        if versioning:
            backend.put_bucket_versioning(bucket.name, versioning["Status"])
        block = properties.get("PublicAccessBlockConfiguration")
        if block:
            backend.put_public_access_block(bucket.name, {k: str(v).lower() for k, v in block.items()})
        ownership = properties.get("OwnershipControls")
        if ownership:
            backend.put_bucket_ownership_controls(bucket.name, ownership["Rules"][0]["ObjectOwnership"])
        lifecycle = properties.get("LifecycleConfiguration")
        if lifecycle:
            rules = []
            for rule in lifecycle["Rules"]:
                api_rule: dict[str, Any] = {"ID": rule.get("Id"), "Status": rule["Status"], "Filter": {"Prefix": rule.get("Prefix", "")}}
                if "AbortIncompleteMultipartUpload" in rule:
                    api_rule["AbortIncompleteMultipartUpload"] = {"DaysAfterInitiation": str(rule["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"])}
                if "NoncurrentVersionExpiration" in rule:
                    api_rule["NoncurrentVersionExpiration"] = {"NoncurrentDays": str(rule["NoncurrentVersionExpiration"]["NoncurrentDays"])}
                if "ExpirationInDays" in rule:
                    api_rule["Expiration"] = {"Days": str(rule["ExpirationInDays"])}
                rules.append(api_rule)
            backend.put_bucket_lifecycle_configuration(bucket.name, rules)
        return bucket

    models.FakeBucket.create_from_cloudformation_json = classmethod(create_from_cloudformation_json)  # type: ignore[assignment]


GROUP_METRICS = [
    "GroupMinSize",
    "GroupMaxSize",
    "GroupDesiredCapacity",
    "GroupInServiceInstances",
    "GroupPendingInstances",
    "GroupStandbyInstances",
    "GroupTerminatingInstances",
    "GroupTotalInstances",
    "GroupInServiceCapacity",
    "GroupPendingCapacity",
    "GroupStandbyCapacity",
    "GroupTerminatingCapacity",
    "GroupTotalCapacity",
]


def group_creates_its_lifecycle_hooks() -> None:
    """Gap: moto's AWS::AutoScaling::AutoScalingGroup ignores LifecycleHookSpecificationList and
    MetricsCollection, and its lifecycle hooks carry a fixed role and notification target. Create the hooks
    as specified (with their own target, role, timeout and default result) and enable the metrics."""
    from moto.autoscaling import models

    original = models.FakeAutoScalingGroup.create_from_cloudformation_json.__func__  # type: ignore[attr-defined]

    def create_from_cloudformation_json(cls: Any, resource_name: str, cloudformation_json: Any, account_id: str, region_name: str, **kwargs: Any) -> Any:
        group = original(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs)
        properties = cloudformation_json["Properties"]
        backend = models.autoscaling_backends[account_id][region_name]
        for spec in properties.get("LifecycleHookSpecificationList") or []:
            hook = backend.create_lifecycle_hook(
                spec["LifecycleHookName"],
                group.name,
                spec["LifecycleTransition"],
                int(spec["HeartbeatTimeout"]) if "HeartbeatTimeout" in spec else None,
                spec.get("DefaultResult"),
            )
            hook.notification_target_arn = spec.get("NotificationTargetARN")
            hook.role_arn = spec.get("RoleARN")
        for collection in properties.get("MetricsCollection") or []:
            # No metrics listed means all of them.
            backend.enable_metrics_collection(group.name, collection.get("Metrics") or GROUP_METRICS)
        return group

    models.FakeAutoScalingGroup.create_from_cloudformation_json = classmethod(create_from_cloudformation_json)  # type: ignore[assignment]


def network_is_deleted_with_its_stack() -> None:
    """Gap: moto's stack deletion has no way to delete a NAT gateway, its Elastic IP, a VPC endpoint, a route
    table (or its subnet associations) or an internet gateway: they stay, and the VPC's deletion then fails with
    "has dependencies", so `serverless remove` fails. CloudFormation deletes each with its stack."""
    from moto.ec2.exceptions import DependencyViolationError
    from moto.ec2.models import ec2_backends, elastic_ip_addresses, internet_gateways, nat_gateways, route_tables, vpcs

    def delete_route_table(self: Any, account_id: str, region_name: str) -> None:
        backend = ec2_backends[account_id][region_name]
        # CloudFormation deletes the dependents first; moto tries in any order and retries what fails.
        if any(self.id in e.route_table_ids and e.state != "deleted" for e in backend.vpc_end_points.values()):
            raise DependencyViolationError(f"route table {self.id} is used by a VPC endpoint")
        for association_id in list(self._associations):
            backend.disassociate_route_table(association_id)
        backend.delete_route_table(self.id)

    def delete_internet_gateway(self: Any, account_id: str, region_name: str) -> None:
        backend = ec2_backends[account_id][region_name]
        if self.vpc is not None:
            backend.detach_internet_gateway(self.id, self.vpc.id)
        backend.delete_internet_gateway(self.id)

    def delete_address(self: Any, account_id: str, region_name: str) -> None:
        ec2_backends[account_id][region_name].release_address(allocation_id=self.allocation_id)

    route_tables.RouteTable.delete = delete_route_table  # type: ignore[attr-defined]
    internet_gateways.InternetGateway.delete = delete_internet_gateway  # type: ignore[attr-defined]
    elastic_ip_addresses.ElasticAddress.delete = delete_address  # type: ignore[attr-defined]
    nat_gateways.NatGateway.delete = lambda self, account_id, region_name: ec2_backends[account_id][region_name].delete_nat_gateway(self.id)  # type: ignore[attr-defined]
    vpcs.VPCEndPoint.delete = lambda self, account_id, region_name: ec2_backends[account_id][region_name].delete_vpc_endpoints([self.id])  # type: ignore[attr-defined]

# moto finds resource types through CloudFormationModel.__subclasses__(), which holds classes weakly: a class
# made inside a function and kept nowhere else is collected by the next cyclic GC, and its type is silently
# "not supported" again. Every registered class is kept here.
_REGISTERED: list[type] = []


def _resource_type(cfn_type: str, name_property: str, create: Callable[[str, dict[str, Any], str, str], str], delete: Callable[[str, str, str], None] | None = None) -> None:
    """Registers a CloudFormation resource type moto does not know, created through its service backend."""
    from moto.core.common_models import CloudFormationModel

    class Resource(CloudFormationModel):
        # moto files every model under the service its module names (moto.<service>.…).
        __module__ = "moto." + cfn_type.split("::")[1].lower() + ".testbed"

        def __init__(self, physical_id: str) -> None:
            self.physical_resource_id = physical_id

        @staticmethod
        def cloudformation_name_type() -> str:
            return name_property

        @staticmethod
        def cloudformation_type() -> str:
            return cfn_type

        @classmethod
        def has_cfn_attr(cls, attr: str) -> bool:
            return False

        @classmethod
        def create_from_cloudformation_json(cls, resource_name: str, cloudformation_json: Any, account_id: str, region_name: str, **kwargs: Any) -> "Resource":
            return cls(create(resource_name, cloudformation_json.get("Properties", {}), account_id, region_name))

        @classmethod
        def update_from_cloudformation_json(cls, original_resource: Any, new_resource_name: str, cloudformation_json: Any, account_id: str, region_name: str) -> "Resource":
            return cls.create_from_cloudformation_json(new_resource_name, cloudformation_json, account_id, region_name)

        @classmethod
        def delete_from_cloudformation_json(cls, resource_name: str, cloudformation_json: Any, account_id: str, region_name: str) -> None:
            if delete:
                delete(resource_name, account_id, region_name)

    Resource.__name__ = Resource.__qualname__ = "Patched" + cfn_type.replace("::", "")
    _REGISTERED.append(Resource)


def bucket_policy_applies() -> None:
    """Gap: moto has no AWS::S3::BucketPolicy; the stack's TLS-only policy is dropped. Put it on the bucket."""
    from moto.s3 import models

    def create(name: str, properties: dict[str, Any], account_id: str, region_name: str) -> str:
        backend = models.s3_backends[account_id][models.get_partition(region_name)]
        backend.put_bucket_policy(properties["Bucket"], json.dumps(properties["PolicyDocument"]).encode())
        return properties["Bucket"]

    _resource_type("AWS::S3::BucketPolicy", "Bucket", create)


def bucket_policy_skips_conditional_statements() -> None:
    """Gap: moto enforces a bucket policy without its conditions, so the TLS-only statement (Deny s3:* when
    aws:SecureTransport is false) denies every request, over TLS or not. The SDK reaches AWS over TLS, where
    that statement never matches; the emulator speaks plain HTTP on loopback. Evaluate only the statements
    without a condition."""
    from moto.iam.access_control import IAMPolicy, PermissionResult
    from moto.s3 import models

    def get_permission(self: Any, action: str, resource: str) -> Any:
        if self.policy is None:
            return PermissionResult.NEUTRAL
        document = json.loads(self.policy)
        statements = document.get("Statement", [])
        document["Statement"] = [s for s in (statements if isinstance(statements, list) else [statements]) if "Condition" not in s]
        return IAMPolicy(json.dumps(document)).is_action_permitted(action, resource)

    models.FakeBucket.get_permission = get_permission  # type: ignore[method-assign]


def topic_policy_applies() -> None:
    """Gap: moto has no AWS::SNS::TopicPolicy; the alarm topic keeps its default policy. Set it on each topic."""
    from moto.sns import models

    def create(name: str, properties: dict[str, Any], account_id: str, region_name: str) -> str:
        backend = models.sns_backends[account_id][region_name]
        for topic in properties["Topics"]:
            backend.set_topic_attribute(topic, "Policy", json.dumps(properties["PolicyDocument"]))
        return name

    _resource_type("AWS::SNS::TopicPolicy", "Id", create)


def alarms_are_created() -> None:
    """Gap: moto has no AWS::CloudWatch::Alarm; every alarm of the stack is dropped. Put each one."""
    from moto.cloudwatch import models

    def create(name: str, p: dict[str, Any], account_id: str, region_name: str) -> str:
        alarm_name = p.get("AlarmName") or name
        models.cloudwatch_backends[account_id][region_name].put_metric_alarm(
            name=alarm_name,
            namespace=p.get("Namespace"),
            metric_name=p.get("MetricName"),
            comparison_operator=p["ComparisonOperator"],
            evaluation_periods=int(p["EvaluationPeriods"]),
            period=int(p["Period"]) if "Period" in p else None,
            threshold=float(p["Threshold"]),
            statistic=p.get("Statistic"),
            description=p.get("AlarmDescription"),
            dimensions=[{"Name": d["Name"], "Value": d["Value"]} for d in p.get("Dimensions") or []],
            alarm_actions=p.get("AlarmActions") or [],
            ok_actions=p.get("OKActions") or [],
            insufficient_data_actions=p.get("InsufficientDataActions") or [],
            datapoints_to_alarm=int(p["DatapointsToAlarm"]) if "DatapointsToAlarm" in p else None,
            treat_missing_data=p.get("TreatMissingData"),
        )
        return alarm_name

    def delete(name: str, account_id: str, region_name: str) -> None:
        models.cloudwatch_backends[account_id][region_name].delete_alarms([name])

    _resource_type("AWS::CloudWatch::Alarm", "AlarmName", create, delete)


def event_invoke_configs_apply() -> None:
    """Gap: moto has no AWS::Lambda::EventInvokeConfig; the functions' on-failure destinations are dropped.
    Put each configuration on its function."""
    from moto.awslambda import models

    def create(name: str, p: dict[str, Any], account_id: str, region_name: str) -> str:
        config = {k: v for k, v in p.items() if k in ("DestinationConfig", "MaximumRetryAttempts", "MaximumEventAgeInSeconds")}
        models.lambda_backends[account_id][region_name].put_function_event_invoke_config(p["FunctionName"], config)
        return p["FunctionName"]

    _resource_type("AWS::Lambda::EventInvokeConfig", "Id", create)


def secrets_are_created() -> None:
    """Gap: moto has no AWS::SecretsManager::Secret nor ::ResourcePolicy; the CA secret and its policy are
    dropped. Create the secret (its Ref is its ARN, as in AWS) and put its policy."""
    from moto.secretsmanager import models

    def create_secret(name: str, p: dict[str, Any], account_id: str, region_name: str) -> str:
        backend = models.secretsmanager_backends[account_id][region_name]
        created = backend.create_secret(
            name=p.get("Name") or name,
            secret_string=p.get("SecretString"),
            secret_binary=None,
            description=p.get("Description"),
            tags=p.get("Tags"),
            kms_key_id=p.get("KmsKeyId"),
            client_request_token=None,
            replica_regions=[],
            force_overwrite=False,
        )
        return str(json.loads(created)["ARN"])

    def delete_secret(name: str, account_id: str, region_name: str) -> None:
        backend = models.secretsmanager_backends[account_id][region_name]
        backend.delete_secret(name, recovery_window_in_days=None, force_delete_without_recovery=True)

    def create_policy(name: str, p: dict[str, Any], account_id: str, region_name: str) -> str:
        models.secretsmanager_backends[account_id][region_name].put_resource_policy(p["SecretId"], json.dumps(p["ResourcePolicy"]))
        return str(p["SecretId"])

    _resource_type("AWS::SecretsManager::Secret", "Name", create_secret, delete_secret)
    _resource_type("AWS::SecretsManager::ResourcePolicy", "Id", create_policy)


def apply() -> None:
    validate_template_reports_errors_only()
    parameters_resolve_as_strings()
    load_balancer_keeps_its_type()
    target_group_has_its_attributes()
    function_keeps_its_architecture()
    lambda_version_refs_its_arn()
    outputs_follow_change_sets()
    bucket_applies_its_settings()
    group_creates_its_lifecycle_hooks()
    network_is_deleted_with_its_stack()
    bucket_policy_applies()
    bucket_policy_skips_conditional_statements()
    topic_policy_applies()
    alarms_are_created()
    event_invoke_configs_apply()
    secrets_are_created()
